"""The end-to-end clusters refuse to boot over another cluster on the same
addresses (the sandbox left running by `make sandbox`), naming the way out,
instead of failing later with "Job for hwdr-agent.service failed"."""

import os
import socket
import unittest

from nspawn import AGENT_PORT, WORK_PREFIX, Cluster


class TakenAddressTest(unittest.TestCase):
    def test_a_taken_agent_address_is_refused_before_anything_boots(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.39", AGENT_PORT))
        listener.listen()
        self.addCleanup(listener.close)
        workdir = f"{WORK_PREFIX}guard-{os.getpid()}"
        cluster = Cluster([("lone", "127.0.0.39")], workdir=workdir)
        with self.assertRaises(RuntimeError) as refused:
            cluster.__enter__()
        self.assertIn("127.0.0.39:7878 (node lone) already answers", str(refused.exception))
        self.assertIn("make sandbox-down", str(refused.exception))
        self.assertFalse(os.path.exists(workdir), "something was set up")


if __name__ == "__main__":
    unittest.main()
