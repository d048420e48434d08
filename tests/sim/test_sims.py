"""Tests of the simulators in tests/sim (run as root: python3 -m unittest discover -s tests/sim).

Each test builds a cluster with `simctl init` in a temp dir and runs the
installed simulators with the clean environment hwdr uses, as the user hwdr
runs them as: `mysql` for RonDB's programs, `hdfs` for hdfs, root for
kafka-restore.sh.
"""

import glob
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

SIM_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SIM_DIR)
import hwdrsim  # noqa: E402

SOCKET = "/srv/hops/mysql-cluster/mysql.sock"
CONNECTSTRING = "127.0.0.1:1186"
EXCLUDED_USERS = "root,mysql.sys,mysql.session,mysql.infoschema"
USER_DATABASES = ["hopsworks", "hops", "metastore", "demo_fs_1"]
ALREADY_EXISTS = ("Backup failed\n*  3001: Could not start backup\n*        Backup failed: "
                  "file already exists (use 'START BACKUP <backup id>'): Temporary error: "
                  "Temporary Resource error\n")
POOL = "BP-1-127.0.0.1-1704844800000"
FIRST_BLOCK_ID = 1073741825  # HDFS' first block id
CONNECTION_REFUSED = (r"^safemode: Call From [^ ]+/127\.0\.0\.1 to "
                      r"rpc\.namenode\.service\.consul:8020 failed on connection exception: "
                      r"java\.net\.ConnectException: Connection refused; For more details see:  "
                      r"http://wiki\.apache\.org/hadoop/ConnectionRefused\n$")
NO_TOPICS_TABLE = "ERROR 1146 (42S02) at line 1: Table 'hopsworks.project_topics' doesn't exist\n"


def setUpModule():
    """Creates the mysql and hdfs system users (hdfs in group hadoop) if missing."""
    subprocess.run(["flock", "/tmp/hwdr-test-users.lock", "sh", "-c",
                    "getent passwd mysql >/dev/null || "
                    "useradd --system --user-group --no-create-home mysql; "
                    "getent group hadoop >/dev/null || groupadd --system hadoop; "
                    "getent passwd hdfs >/dev/null || useradd --system --user-group "
                    "--no-create-home --shell /usr/sbin/nologin --groups hadoop hdfs"],
                   check=True)


class SimTestCase(unittest.TestCase):
    """A simulated cluster in a temp dir, and helpers to run its programs."""

    data_nodes = "2:2,3:2"
    rows = 120

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hwdr-sim-test-")
        self.addCleanup(shutil.rmtree, self.tmp)
        os.chmod(self.tmp, 0o755)
        self.root = os.path.join(self.tmp, "root")
        self.work = os.path.join(self.tmp, "work")
        os.mkdir(self.work)
        shutil.chown(self.work, "mysql", "mysql")
        self.simctl("init", self.root, "--data-nodes", self.data_nodes, "--rows", str(self.rows))
        self.bin = os.path.join(self.root, "bin")
        self.state = os.path.join(self.root, "state")

    # running things
    def simctl(self, *args, check=True):
        """Runs tests/sim/simctl as root."""
        return subprocess.run([os.path.join(SIM_DIR, "simctl"), *args], capture_output=True,
                              text=True, check=check)

    def sim_command(self, program, *args, user="mysql"):
        """(argv, env) running an installed simulator as `user` with hwdr's clean environment."""
        entry = pwd.getpwnam(user)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "HOME": entry.pw_dir, "USER": user}
        switch = [] if entry.pw_uid == 0 else [
            "setpriv", f"--reuid={user}", f"--regid={entry.pw_gid}", "--init-groups"]
        return switch + [os.path.join(self.bin, program), *args], env

    def run_sim(self, program, *args, timeout=30, check=None, user="mysql", stdin=None):
        """Runs an installed simulator as `user` (mysql) with hwdr's clean environment,
        `stdin` (text) on its standard input (None: /dev/null).

        `check` is the exit status expected (None: do not check).
        """
        argv, env = self.sim_command(program, *args, user=user)
        result = subprocess.run(argv, env=env, cwd=self.work, capture_output=True, text=True,
                                timeout=timeout, input=stdin,
                                stdin=subprocess.DEVNULL if stdin is None else None)
        if check is not None:
            self.assertEqual(result.returncode, check, result.stdout + result.stderr)
        return result

    def dump(self):
        """simctl dump as a document."""
        return json.loads(self.simctl("dump", self.root).stdout)

    def cluster(self):
        """The raw cluster.json."""
        return hwdrsim.load_json(os.path.join(self.state, "cluster.json"))

    def control(self, program, mode):
        """Sets a failure mode."""
        self.simctl("control", self.root, program, mode)

    # the runbook's steps
    def start_backup(self, backup_id, check=0):
        """mgm-client.sh -e "START BACKUP <id> SNAPSHOTEND WAIT COMPLETED"."""
        return self.run_sim("mgm-client.sh", "-e",
                            f"START BACKUP {backup_id} SNAPSHOTEND WAIT COMPLETED", check=check)

    def backup_path(self, node_id, backup_id):
        """<backup_dir>/BACKUP/BACKUP-<id> of a data node."""
        return os.path.join(self.root, f"ndb{node_id}", "backups", "BACKUP", f"BACKUP-{backup_id}")

    def ndb_restore(self, node_id, backup_id, *steps, check=0, stdin=None):
        """ndb_restore of one node's files with the runbook's connectstring and path."""
        return self.run_sim("ndb_restore", "-n", str(node_id), "-b", str(backup_id), *steps,
                            f"--ndb-connectstring={CONNECTSTRING}",
                            f"--backup_path={self.backup_path(node_id, backup_id)}", check=check,
                            stdin=stdin)

    def dump_users(self):
        """The runbook's mysqlpump command, into work/users.sql."""
        result = self.run_sim("mysqlpump", "-S", SOCKET, "--exclude-databases=%",
                              f"--exclude-users={EXCLUDED_USERS}", "--users", check=0)
        path = os.path.join(self.work, "users.sql")
        with open(path, "w", encoding="utf-8") as f:
            f.write(result.stdout)
        return path

    def dump_schemas(self, *databases):
        """Hopsworks' mysqldump command, into work/schema.sql with CREATE TABLE IF NOT EXISTS."""
        result = self.run_sim("mysqldump", "-S", SOCKET, "--no-data", "--skip-add-drop-table",
                              "--triggers", "--routines", "--events", "--databases",
                              *(databases or USER_DATABASES), check=0)
        path = os.path.join(self.work, "schema.sql")
        with open(path, "w", encoding="utf-8") as f:
            f.write(result.stdout.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS "))
        return path

    def mysql(self, sql, *options, check=0):
        """mysql -S <socket> [options] -e <sql>."""
        return self.run_sim("mysql", "-S", SOCKET, *options, "-e", sql, check=check)


class InitTest(SimTestCase):
    """simctl init."""

    def test_installs_simulators_config_and_state(self):
        for name in ("mgm-client.sh", "mysql", "mysql-client.sh", "mysqldump", "mysqlpump",
                     "ndb_restore", "hdfs", "reindex-epipe.sh", "kafka-restore.sh", "hwdrsim.py"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.bin, name)).st_mode), 0o755)
        config = hwdrsim.load_json(os.path.join(self.root, "hwdr-sim.json"))
        self.assertEqual(sorted(config), ["data_nodes", "mgm", "socket", "state_dir"])
        self.assertEqual(config["data_nodes"]["3"]["ldm_parts"], 2)
        mysql_uid = pwd.getpwnam("mysql").pw_uid
        self.assertEqual(os.stat(self.state).st_uid, mysql_uid)
        invocations = os.stat(os.path.join(self.state, "invocations.jsonl"))
        self.assertEqual(stat.S_IMODE(invocations.st_mode), 0o666)
        backups = os.stat(os.path.join(self.root, "ndb2", "backups"))
        self.assertEqual((backups.st_uid, stat.S_IMODE(backups.st_mode)), (mysql_uid, 0o750))
        self.assertEqual(self.simctl("topics", self.root).stdout, "{}\n")
        self.assertEqual(self.simctl("reindexes", self.root).stdout, "0\n")
        reindex_log = os.stat(os.path.join(self.state, "reindex.jsonl"))
        self.assertEqual((reindex_log.st_uid, stat.S_IMODE(reindex_log.st_mode)),
                         (mysql_uid, 0o666))

    def test_sample_content(self):
        content = self.dump()
        self.assertLessEqual(set(USER_DATABASES + ["glassfish_timers"]), set(content["databases"]))
        hopsworks = content["databases"]["hopsworks"]
        self.assertEqual([c["name"] for c in hopsworks["tables"]["project_topics"]["columns"]],
                         ["id", "topic_name", "num_partitions", "num_replicas"])
        self.assertIn("users_emails", hopsworks["views"])
        self.assertIn("count_projects", hopsworks["procedures"])
        self.assertIn("purge_topics", hopsworks["events"])
        self.assertIn("inode_size_check", content["databases"]["hops"]["triggers"])
        self.assertIn("next_db_id", content["databases"]["metastore"]["functions"])
        self.assertLessEqual({"`hopsworks`@`%`", "`hive`@`%`", "`demo_fs_1_user`@`%`",
                              "`root`@`localhost`", "`mysql.sys`@`localhost`"},
                             set(content["users"]))
        rows = sum(len(t["rows"]) for db in content["databases"].values()
                   for t in db["tables"].values())
        self.assertEqual(rows, self.rows)

    def test_refuses_a_root_mysql_cannot_reach(self):
        hidden = os.path.join(self.tmp, "hidden")
        os.mkdir(hidden, 0o700)
        result = self.simctl("init", os.path.join(hidden, "root"), check=False)
        self.assertEqual(result.returncode, 1)
        self.assertIn("user 'mysql' cannot reach", result.stderr)

    def test_wipe_leaves_a_fresh_cluster(self):
        self.run_sim("kafka-restore.sh", user="root", check=0)
        self.run_sim("reindex-epipe.sh", check=0)
        self.assertNotEqual(self.simctl("topics", self.root).stdout, "{}\n")
        self.simctl("wipe", self.root)
        self.assertEqual(self.simctl("topics", self.root).stdout, "{}\n")
        self.assertEqual(self.simctl("reindexes", self.root).stdout, "0\n")
        content = self.dump()
        self.assertEqual(sorted(content["databases"]), ["glassfish_timers"])
        self.assertEqual(sorted(content["users"]), [
            "`mysql.infoschema`@`localhost`", "`mysql.session`@`localhost`",
            "`mysql.sys`@`localhost`", "`root`@`localhost`"])


class BackupTest(SimTestCase):
    """mgm-client.sh and the backup files (LDM parts 2)."""

    def backup_files(self, backup_id):
        """Every file of a backup on every node, relative to the node's BACKUP-<id>."""
        return {node_id: sorted(os.path.relpath(path, self.backup_path(node_id, backup_id))
                                for path in glob.glob(self.backup_path(node_id, backup_id) + "/**",
                                                      recursive=True) if os.path.isfile(path))
                for node_id in (2, 3)}

    def test_start_backup_output_and_layout(self):
        result = self.start_backup(7)
        files = self.backup_files(7)
        self.assertEqual(files[2], [
            "BACKUP-7-PART-1-OF-2/BACKUP-7-0.2.Data", "BACKUP-7-PART-1-OF-2/BACKUP-7.2.ctl",
            "BACKUP-7-PART-1-OF-2/BACKUP-7.2.log", "BACKUP-7-PART-2-OF-2/BACKUP-7-0.2.Data",
            "BACKUP-7-PART-2-OF-2/BACKUP-7.2.ctl", "BACKUP-7-PART-2-OF-2/BACKUP-7.2.log"])
        self.assertEqual(len(files[3]), 6)
        sizes = {"Data": 0, "log": 0}
        for node_id in (2, 3):
            for name in files[node_id]:
                sizes[name.rpartition(".")[2]] = sizes.get(name.rpartition(".")[2], 0) + \
                    os.path.getsize(os.path.join(self.backup_path(node_id, 7), name))
        self.assertEqual(result.stdout, (
            "Waiting for completed, this may take several minutes\n"
            "Node 2: Backup 7 started from node 1\n"
            "Node 2: Backup 7 started from node 1 completed\n"
            " StartGCP: 175 StopGCP: 178\n"
            f" #Records: {self.rows} #LogRecords: 0\n"
            f" Data: {sizes['Data']} bytes Log: {sizes['log']} bytes\n"))
        second = self.start_backup(8)
        self.assertIn(" StartGCP: 179 StopGCP: 182\n", second.stdout)

    def test_rows_spread_by_crc32_of_primary_key(self):
        self.start_backup(1)
        cluster = self.cluster()
        seen = []
        for path in glob.glob(self.root + "/ndb*/backups/BACKUP/BACKUP-1/*/*.Data"):
            document = hwdrsim.read_backup_file(path)
            for entry in document["tables"]:
                table = cluster["databases"][entry["database"]]["tables"][entry["name"]]
                for row in entry["rows"]:
                    crc = zlib.crc32(json.dumps(hwdrsim.primary_key(table, row),
                                                separators=(",", ":")).encode())
                    self.assertEqual(([2, 3][crc % 2], (crc // 2) % 2 + 1),
                                     (document["node_id"], document["part"]))
                    seen.append((entry["database"], entry["name"], json.dumps(row)))
        expected = [(db, name, json.dumps(row)) for db, name, table in hwdrsim.ndb_tables(cluster)
                    for row in table["rows"]]
        self.assertEqual(sorted(seen), sorted(expected))
        ctl = hwdrsim.read_backup_file(os.path.join(self.backup_path(2, 1),
                                                    "BACKUP-1-PART-1-OF-2", "BACKUP-1.2.ctl"))
        self.assertEqual(ctl["data_nodes"], [2, 3])
        self.assertNotIn("glassfish_timers", {t["database"] for t in ctl["tables"]})

    def test_taken_id_is_refused_and_nothing_written(self):
        self.start_backup(7)
        before = self.backup_files(7)
        result = self.start_backup(7, check=255)
        self.assertEqual(result.stdout,
                         "Waiting for completed, this may take several minutes\n" + ALREADY_EXISTS)
        self.assertEqual(self.backup_files(7), before)

    def test_next_id_and_range(self):
        self.start_backup(41)
        result = self.run_sim("mgm-client.sh", "-e", "START", "BACKUP", check=0)
        self.assertIn("Node 2: Backup 42 started from node 1 completed", result.stdout)
        for bad in ("0", "4294967295"):
            result = self.start_backup(bad, check=255)
            self.assertEqual(result.stdout, "Backup ID out of range [1 - 4294967294]\n")

    def test_wait_modes_show_and_abort(self):
        result = self.run_sim("mgm-client.sh", "-e", "START BACKUP 3 WAIT STARTED", check=0)
        self.assertEqual(result.stdout, "Waiting for started, this may take several minutes\n"
                                        "Node 2: Backup 3 started from node 1\n")
        self.assertEqual(self.run_sim("mgm-client.sh", "-e", "START BACKUP 4 NOWAIT",
                                      check=0).stdout, "")
        show = self.run_sim("mgm-client.sh", "-e", "SHOW", check=0).stdout
        self.assertIn("id=2\t@127.0.0.1  (RonDB-22.10.5, Nodegroup: 0, *)\n", show)
        self.assertIn("id=3\t@127.0.0.1  (RonDB-22.10.5, Nodegroup: 0)\n", show)
        self.assertEqual(self.run_sim("mgm-client.sh", "-e", "ABORT BACKUP 4", check=0).stdout,
                         "Abort of backup 4 ordered\n")
        self.assertEqual(self.run_sim("mgm-client.sh", "--bogus", check=255).stdout,
                         "Unknown option '--bogus'\n")
        self.assertEqual(self.run_sim("mgm-client.sh", "-e", "START BACKUP 5 SOON",
                                      check=255).stdout,
                         "Invalid command: START BACKUP 5 SOON\nType HELP for help.\n\n")

    def test_invocations_are_logged(self):
        self.start_backup(5)
        with open(os.path.join(self.state, "invocations.jsonl"), encoding="utf-8") as f:
            record = json.loads(f.readlines()[-1])
        mysql = pwd.getpwnam("mysql")
        self.assertEqual(record["program"], "mgm-client.sh")
        self.assertEqual(record["argv"], ["-e", "START BACKUP 5 SNAPSHOTEND WAIT COMPLETED"])
        self.assertEqual((record["uid"], record["euid"], record["gid"]),
                         (mysql.pw_uid, mysql.pw_uid, mysql.pw_gid))
        self.assertEqual(record["env"], ["HOME", "LANG", "PATH", "USER"])
        self.assertEqual(record["cwd"], self.work)


class SinglePartBackupTest(SimTestCase):
    """Backup files with one LDM part per node."""

    data_nodes = "2:1,3:1"

    def test_files_sit_directly_in_the_backup_dir(self):
        self.start_backup(9)
        for node_id in (2, 3):
            self.assertEqual(sorted(os.listdir(self.backup_path(node_id, 9))), [
                f"BACKUP-9-0.{node_id}.Data", f"BACKUP-9.{node_id}.ctl", f"BACKUP-9.{node_id}.log"])

    def test_restore_of_single_part_backup(self):
        before = self.dump()
        self.start_backup(9)
        self.simctl("wipe", self.root)
        self.ndb_restore(3, 9, "-m", "--disable-indexes")
        self.ndb_restore(2, 9, "-r")
        self.ndb_restore(3, 9, "-r", "--rebuild-indexes")
        restored = self.dump()
        for db in USER_DATABASES:
            self.assertEqual(restored["databases"][db]["tables"], before["databases"][db]["tables"])


class FailureModeTest(SimTestCase):
    """state_dir/control/<program>."""

    def test_mgm_connection_failures(self):
        unreachable = f"Unable to connect with connect string: nodeid=0,{CONNECTSTRING}\n"
        for mode, text, stream in (
                ("unreachable", unreachable, "stderr"),
                ("unreachable-error", "ERROR: " + unreachable, "stderr"),
                ("no-contact", "No contact with database nodes\n", "stdout")):
            self.control("mgm-client.sh", mode)
            result = self.start_backup(1, check=255)
            self.assertEqual(getattr(result, stream), text)
        self.assertFalse(os.path.exists(self.backup_path(2, 1)))

    def test_mgm_skip_log_and_skip_node(self):
        self.control("mgm-client.sh", "skip-log:2")
        self.start_backup(1)
        part1 = os.path.join(self.backup_path(2, 1), "BACKUP-1-PART-1-OF-2")
        self.assertEqual(sorted(os.listdir(part1)), ["BACKUP-1-0.2.Data", "BACKUP-1.2.ctl"])
        self.control("mgm-client.sh", "skip-node:3")
        self.start_backup(2)
        self.assertTrue(os.path.isdir(self.backup_path(2, 2)))
        self.assertFalse(os.path.exists(self.backup_path(3, 2)))

    def test_hang(self):
        for program, args in (("mgm-client.sh", ["-e", "START BACKUP 5 WAIT COMPLETED"]),
                              ("mysqlpump", []),
                              ("mysql-client.sh", ["-e", "SHOW DATABASES"])):
            self.control(program, "hang")
            with self.assertRaises(subprocess.TimeoutExpired):
                self.run_sim(program, *args, timeout=1.5)
        # The management server still answers while a backup hangs.
        self.assertEqual(self.run_sim("mgm-client.sh", "-e", "ABORT BACKUP 5", timeout=10).stdout,
                         "Abort of backup 5 ordered\n")

    def test_client_failures(self):
        self.control("mysqlpump", "fail")
        result = self.run_sim("mysqlpump", "-S", SOCKET, "--exclude-databases=%", "--users",
                              check=2)
        self.assertTrue(result.stdout.startswith("-- Dump created by MySQL pump utility"))
        self.assertEqual(result.stderr, "mysqlpump: [ERROR] (2013) Lost connection to MySQL server "
                         "during query\nDump process encountered error and will not continue.\n")
        self.control("mysqldump", "fail")
        result = self.run_sim("mysqldump", "-S", SOCKET, "--no-data", "--databases", "hops",
                              check=2)
        self.assertEqual(result.stderr, "mysqldump: Got error: 2013: Lost connection to MySQL "
                         "server during query when selecting the database\n")
        self.control("mysql", "fail")
        self.assertEqual(self.mysql("SHOW DATABASES", check=1).stderr,
                         "ERROR 2013 (HY000) at line 1: Lost connection to MySQL server during "
                         "query\n")
        self.control("mysql-client.sh", "fail")
        result = self.run_sim("mysql-client.sh", "-e", "SHOW DATABASES", check=1)
        self.assertEqual(result.stdout, f"Using socket: {SOCKET}\n")
        self.assertIn("mysql: [ERROR] Could not open required defaults file: ", result.stderr)

    def test_fail_once(self):
        self.control("mysql", "fail-once")
        self.mysql("SHOW DATABASES", check=1)
        self.mysql("SHOW DATABASES", check=0)
        self.assertFalse(os.path.exists(os.path.join(self.state, "control", "mysql")))

    def test_ndb_restore_fail_and_exit0_error(self):
        self.start_backup(1)
        self.simctl("wipe", self.root)
        self.control("ndb_restore", "fail")
        result = self.ndb_restore(2, 1, "-m", check=1)
        self.assertIn("NDBT_ProgramExit: 1 - Failed", result.stdout)
        self.control("ndb_restore", "exit0-error")
        result = self.ndb_restore(2, 1, "-m", check=0)
        self.assertIn("Node failure caused abort of transaction", result.stderr)
        self.assertIn("NDBT_ProgramExit: 1 - Failed", result.stdout)
        self.assertNotIn("hopsworks", self.dump()["databases"])

    def test_unknown_mode_is_refused(self):
        result = self.simctl("control", self.root, "mysql", "exit0-error", check=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn("has no mode 'exit0-error'", result.stderr)


class ClientOutputTest(SimTestCase):
    """mysqlpump, mysqldump, mysql and mysql-client.sh."""

    def test_mysqlpump_users(self):
        with open(self.dump_users(), encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "-- Dump created by MySQL pump utility, version: 8.0.34, "
                                   "Linux (x86_64)")
        self.assertTrue(lines[1].startswith("-- Dump start time: "))
        self.assertEqual(lines[2:4], ["-- Server version: 8.0.34", ""])
        self.assertIn("SET @@SESSION.SQL_LOG_BIN= 0;", lines)
        self.assertTrue(lines[-1].startswith("-- Dump end time: "))
        hopsworks = [line for line in lines if "hopsworks" in line]
        self.assertRegex(hopsworks[0], r"^CREATE USER 'hopsworks'@'%' IDENTIFIED WITH "
                         r"'mysql_native_password' AS '\*[0-9A-F]{40}' REQUIRE NONE PASSWORD "
                         r"EXPIRE DEFAULT ACCOUNT UNLOCK PASSWORD HISTORY DEFAULT PASSWORD REUSE "
                         r"INTERVAL DEFAULT PASSWORD REQUIRE CURRENT DEFAULT;$")
        self.assertIn("GRANT ALL PRIVILEGES ON `hopsworks`.* TO `hopsworks`@`%`;", hopsworks)
        self.assertFalse([line for line in lines if "'root'@" in line or "mysql.sys" in line])

    def test_mysqlpump_wrong_socket(self):
        result = self.run_sim("mysqlpump", "-S", "/tmp/nothing.sock", "--exclude-databases=%",
                              "--users", check=2)
        self.assertTrue(result.stderr.startswith(
            "mysqlpump: [ERROR] (2002) Can't connect to local MySQL server through socket "
            "'/tmp/nothing.sock' (2)\n"))

    def test_mysqldump_schemas(self):
        with open(self.dump_schemas(), encoding="utf-8") as f:
            text = f.read()
        self.assertTrue(text.startswith(
            "-- MySQL dump 10.13  Distrib 8.0.34, for Linux (x86_64)\n"))
        self.assertIn("CREATE DATABASE /*!32312 IF NOT EXISTS*/ `hops` /*!40100 DEFAULT CHARACTER "
                      "SET latin1 */ /*!80016 DEFAULT ENCRYPTION='N' */;\n\nUSE `hops`;", text)
        self.assertIn("CREATE TABLE IF NOT EXISTS `hdfs_inodes` (\n"
                      "  `partition_id` bigint NOT NULL,", text)
        self.assertIn(") ENGINE=ndbcluster DEFAULT CHARSET=latin1 COLLATE=latin1_general_cs;", text)
        self.assertIn("/*!50003 TRIGGER `inode_size_check` BEFORE INSERT ON `hdfs_inodes`", text)
        self.assertIn("DELIMITER ;;\nCREATE DEFINER=`root`@`localhost` PROCEDURE `count_projects`",
                      text)
        self.assertIn("/*!50106 EVENT `purge_topics` ON SCHEDULE EVERY 1 DAY", text)
        self.assertIn("-- Final view structure for view `users_emails`", text)
        self.assertNotIn("DROP TABLE", text)
        self.assertRegex(text, r"\n-- Dump completed on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$")

    def test_schemas_survive_dump_drop_and_source(self):
        def without_rows(content):
            for database in content["databases"].values():
                for table in database["tables"].values():
                    table["rows"] = []
            return content
        before = without_rows(self.dump())
        databases = USER_DATABASES + ["glassfish_timers"]
        path = self.dump_schemas(*databases)
        self.mysql("".join(f"DROP DATABASE {name};" for name in databases))
        self.assertNotIn("hops", self.dump()["databases"])
        self.run_sim("mysql-client.sh", "-e", f"SOURCE {path}", check=0)
        self.assertEqual(self.dump(), before)

    def test_mysqldump_unknown_database(self):
        result = self.run_sim("mysqldump", "-S", SOCKET, "--no-data", "--databases", "hops",
                              "nosuchdb", check=2)
        self.assertEqual(result.stderr,
                         "mysqldump: Got error: 1049: Unknown database 'nosuchdb' when selecting "
                         "the database\n")
        self.assertIn("USE `hops`;", result.stdout)

    def test_show_databases_and_select(self):
        result = self.mysql("SHOW DATABASES", "--batch")
        self.assertEqual(result.stdout.splitlines()[0], "Database")
        names = self.mysql("SHOW DATABASES", "-N").stdout.splitlines()
        self.assertLessEqual({"mysql", "information_schema", "performance_schema", "sys", "ndbinfo",
                              "hopsworks"}, set(names))
        count = self.mysql("SELECT COUNT(*) FROM hops.hdfs_inodes", "-B", "-N").stdout
        table = self.cluster()["databases"]["hops"]["tables"]["hdfs_inodes"]
        self.assertEqual(count, f"{len(table['rows'])}\n")
        rows = self.mysql("SELECT * FROM hdfs_inodes", "-D", "hops").stdout.splitlines()
        self.assertEqual(rows[0], "partition_id\tparent_id\tname\tid\tsize")
        self.assertEqual(len(rows), len(table["rows"]) + 1)

    def test_mysql_errors(self):
        self.assertEqual(
            self.mysql("CREATE USER 'hive'@'%' IDENTIFIED BY 'x'", check=1).stderr,
            "ERROR 1396 (HY000) at line 1: Operation CREATE USER failed for 'hive'@'%'\n")
        self.mysql("CREATE USER IF NOT EXISTS 'hive'@'%' IDENTIFIED BY 'x'")
        self.assertEqual(self.mysql("USE hops;\nCREATE TABLE hdfs_inodes (a int)", check=1).stderr,
                         "ERROR 1050 (42S01) at line 2: Table 'hdfs_inodes' already exists\n")
        self.assertEqual(self.mysql("SOURCE users.sql", check=1).stderr,
                         "ERROR: Failed to open file 'users.sql', error: 2\n")
        self.assertEqual(self.mysql("CREATE TRIGGER hops.t2 BEFORE INSERT ON nothere FOR EACH ROW "
                                    "SET NEW.a = 1", check=1).stderr,
                         "ERROR 1146 (42S02) at line 1: Table 'hops.nothere' doesn't exist\n")

    def test_mysql_client_sh_source_as_in_the_runbook_fails(self):
        self.dump_users()
        result = self.run_sim("mysql-client.sh", "source", "users.sql", check=1)
        self.assertEqual(result.stdout, f"Using socket: {SOCKET}\n")
        self.assertEqual(result.stderr,
                         "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax; "
                         "check the manual that corresponds to your MySQL server version for the "
                         "right syntax to use near 'users.sql' at line 1\n")
        with open(os.path.join(self.state, "invocations.jsonl"), encoding="utf-8") as f:
            calls = [json.loads(line) for line in f][-2:]
        self.assertEqual([c["program"] for c in calls], ["mysql-client.sh", "mysql"])
        self.assertEqual(calls[1]["argv"], [
            f"--defaults-file={self.state}/my.cnf", "-e", "users.sql"])

    def test_mysql_client_sh_with_absolute_source_works(self):
        path = self.dump_users()
        self.simctl("wipe", self.root)
        result = self.run_sim("mysql-client.sh", "-e", f"SOURCE {path}", check=0)
        self.assertEqual(result.stdout, f"Using socket: {SOCKET}\n")
        self.assertIn("`hopsworks`@`%`", self.dump()["users"])
        result = self.run_sim("mysql-client.sh", "-e", f"SOURCE {path}", check=1)
        self.assertEqual(result.stderr, "ERROR 1396 (HY000) at line 16 in file: "
                         f"'{path}': Operation CREATE USER failed for 'demo_fs_1_user'@'%'\n")


class RestoreTest(SimTestCase):
    """ndb_restore and the runbook's restore order."""

    def test_full_restore_gives_back_the_backed_up_cluster(self):
        before = self.dump()
        users, schemas = self.dump_users(), self.dump_schemas()
        backup_id = 2347105  # Hopsworks' short %y%V%u%M form
        self.start_backup(backup_id)
        self.simctl("wipe", self.root)
        self.assertNotEqual(self.dump(), before)
        self.ndb_restore(2, backup_id, "-m", "--disable-indexes")
        for node_id in (2, 3):
            result = self.ndb_restore(node_id, backup_id, "-r", "--allow-unique-indexes",
                                      "--no-binlog")
            self.assertRegex(result.stdout, r"Restored \d+ tuples and 0 log entries\n")
            self.assertTrue(result.stdout.endswith("\nNDBT_ProgramExit: 0 - OK\n"))
        users_table = self.dump()["databases"]["hopsworks"]["tables"]["users"]
        self.assertFalse(users_table["indexes"][0]["built"])
        self.ndb_restore(3, backup_id, "--rebuild-indexes")
        self.ndb_restore(3, backup_id, "--restore-epoch")
        self.run_sim("mysql-client.sh", "-e", f"SOURCE {users}", check=0)
        self.run_sim("mysql-client.sh", "-e", f"SOURCE {schemas}", check=0)
        self.assertEqual(self.dump(), before)
        apply_status = self.mysql("SELECT * FROM mysql.ndb_apply_status", "-N").stdout
        self.assertEqual(apply_status, "0\t178\t\t0\t0\n")

    def test_parallel_data_restores(self):
        before = self.dump()
        self.start_backup(5)
        self.simctl("wipe", self.root)
        self.ndb_restore(2, 5, "-m")
        mysql = ["setpriv", "--reuid=mysql", "--regid=mysql", "--init-groups",
                 os.path.join(self.bin, "ndb_restore")]
        runs = [subprocess.Popen(mysql + ["-n", str(n), "-b", "5", "-r", "-c", CONNECTSTRING,
                                          "--backup-path", self.backup_path(n, 5)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for n in (2, 3)]
        self.assertEqual([run.wait(timeout=30) for run in runs], [0, 0])
        restored = self.dump()["databases"]
        for db in USER_DATABASES:
            for name, table in before["databases"][db]["tables"].items():
                self.assertEqual(restored[db]["tables"][name]["rows"], table["rows"])

    def test_out_of_order_use_is_refused(self):
        self.start_backup(1)
        self.simctl("wipe", self.root)
        result = self.ndb_restore(2, 1, "-r", check=1)
        self.assertIn("Unable to find table: `demo_fs_1/def/profiles_1` error : 723", result.stderr)
        self.ndb_restore(2, 1, "-m", "--disable-indexes")
        result = self.ndb_restore(2, 1, "-m", check=1)
        self.assertIn("Create table `demo_fs_1/def/profiles_1` failed: 721: Schema object with "
                      "given name already exists", result.stderr)
        self.ndb_restore(2, 1, "-r")
        result = self.ndb_restore(2, 1, "--rebuild-indexes", check=1)
        self.assertIn("data of node(s) 3 of backup 1", result.stderr)
        result = self.ndb_restore(2, 1, "-r", check=1)
        self.assertIn("Error 630: Tuple already existed when attempting to insert", result.stderr)
        self.ndb_restore(4, 1, "-r", check=1)

    def test_backup_id_above_int32_cannot_be_restored(self):
        self.start_backup(2611231200)
        self.assertTrue(os.path.isdir(self.backup_path(2, 2611231200)))
        result = self.ndb_restore(2, 2611231200, "-m", check=1)
        self.assertIn("ndb_restore: [Warning] option 'backupid': signed value 2611231200 adjusted "
                      "to 2147483647.\n", result.stderr)
        self.assertIn("Backup Id = 2147483647\n", result.stdout)
        self.assertIn("Failed to find backup 2147483647 in path ", result.stderr)
        self.assertTrue(result.stdout.endswith("NDBT_ProgramExit: 1 - Failed\n"))

    def test_truncated_data_file_is_detected(self):
        self.start_backup(1)
        self.simctl("wipe", self.root)
        self.ndb_restore(2, 1, "-m")
        data = os.path.join(self.backup_path(3, 1), "BACKUP-1-PART-2-OF-2", "BACKUP-1-0.3.Data")
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) - 100)
        result = self.ndb_restore(3, 1, "-r", check=1)
        self.assertIn("Restore: An error occurred while reading data. Exiting...", result.stderr)

    def test_missing_log_file_is_detected(self):
        self.control("mgm-client.sh", "skip-log:3")
        self.start_backup(1)
        self.simctl("wipe", self.root)
        self.ndb_restore(2, 1, "-m")
        result = self.ndb_restore(3, 1, "-r", check=1)
        self.assertIn("Failed to read header of data file. Exiting...", result.stderr)

    def test_wrong_connectstring(self):
        self.start_backup(1)
        result = self.run_sim("ndb_restore", "-n", "2", "-b", "1", "-m", "-c", "head9:1186",
                              "--backup-path", self.backup_path(2, 1), check=1)
        self.assertIn("Unable to connect with connect string: nodeid=0,head9:1186\n"
                      "Could not connect to management server\n", result.stderr)


class EncryptedBackupTest(SimTestCase):
    """START BACKUP ... ENCRYPT PASSWORD on mgm-client.sh's standard input, and
    ndb_restore --decrypt with the password from its standard input."""

    PASSWORD = "s3cret pass (word)"
    COMMAND = f"START BACKUP 7 ENCRYPT PASSWORD='{PASSWORD}' SNAPSHOTEND WAIT COMPLETED\n"

    def files(self, backup_id):
        """Every file of backup `backup_id` on every data node."""
        return [path for node_id in (2, 3)
                for path in glob.glob(self.backup_path(node_id, backup_id) + "/**", recursive=True)
                if os.path.isfile(path)]

    def backup(self):
        """Takes encrypted backup 7 with the command on stdin; returns its output."""
        result = self.run_sim("mgm-client.sh", stdin=self.COMMAND, check=0)
        self.assertIn("Node 2: Backup 7 started from node 1 completed\n", result.stdout)
        return result

    def test_the_command_on_stdin_writes_encrypted_files_and_no_password_in_the_argv(self):
        result = self.backup()
        self.assertTrue(result.stdout.startswith("-- NDB Cluster -- Management Client --\n"))
        self.assertRegex(result.stdout, r" #Records: 120 #LogRecords: 0\n")
        files = self.files(7)
        self.assertEqual(len(files), 12)
        a_row = json.dumps(self.dump()["databases"]["hopsworks"]["tables"]["users"]["rows"][0])
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            self.assertTrue(data.startswith(b"NDBXFRM1"), path)
            for plain in (b"NDBBCKUP", b'"tables"', a_row.encode()[:20]):
                self.assertNotIn(plain, data, path)
        with open(os.path.join(self.state, "invocations.jsonl"), encoding="utf-8") as f:
            runs = [json.loads(line) for line in f]
        self.assertEqual([r["argv"] for r in runs if r["program"] == "mgm-client.sh"], [[]])
        self.assertNotIn("s3cret", json.dumps(runs))

    def test_an_encrypted_backup_restores_only_with_its_password(self):
        before = self.dump()
        self.backup()
        self.simctl("wipe", self.root)
        wiped = self.dump()
        result = self.ndb_restore(2, 7, "-m", "--disable-indexes", check=1)
        self.assertIn("File is encrypted but no decryption requested.\nFailed to read ",
                      result.stderr)
        self.assertTrue(result.stdout.endswith("NDBT_ProgramExit: 1 - Failed\n"))
        result = self.ndb_restore(2, 7, "-m", "--decrypt", "--backup-password-from-stdin",
                                  stdin="wrong password\n", check=1)
        self.assertIn("Can not read decrypted file. Might be wrong password.\n", result.stderr)
        self.assertEqual(self.dump(), wiped)
        self.ndb_restore(2, 7, "-m", "--disable-indexes", "--decrypt",
                         "--backup-password-from-stdin", stdin=self.PASSWORD + "\n")
        self.ndb_restore(2, 7, "-r", "--decrypt", f"--backup-password={self.PASSWORD}")
        self.ndb_restore(3, 7, "-r", "--decrypt", "--backup-password",
                         stdin=self.PASSWORD + "\n")
        self.ndb_restore(3, 7, "--rebuild-indexes", "--decrypt", "--backup-password-from-stdin",
                         stdin=self.PASSWORD + "\n")
        after = self.dump()
        # The tables with their rows; views and routines come from schemas.sql.
        for database in USER_DATABASES:
            self.assertEqual(after["databases"][database]["tables"],
                             before["databases"][database]["tables"], database)

    def test_a_plain_backup_is_not_decrypted(self):
        self.start_backup(8)
        self.simctl("wipe", self.root)
        result = self.ndb_restore(2, 8, "-m", "--decrypt", "--backup-password=x", check=1)
        self.assertIn("Decryption requested but file not encrypted.\n", result.stderr)

    def test_a_tampered_encrypted_file_is_refused(self):
        self.backup()
        self.simctl("wipe", self.root)
        self.ndb_restore(2, 7, "-m", "--decrypt", f"--backup-password={self.PASSWORD}")
        data = os.path.join(self.backup_path(3, 7), "BACKUP-7-PART-2-OF-2", "BACKUP-7-0.3.Data")
        with open(data, "r+b") as f:
            f.seek(-10, os.SEEK_END)
            byte = f.read(1)
            f.seek(-10, os.SEEK_END)
            f.write(bytes([byte[0] ^ 1]))
        result = self.ndb_restore(3, 7, "-r", "--decrypt", f"--backup-password={self.PASSWORD}",
                                  check=1)
        self.assertIn("Restore: An error occurred while reading data. Exiting...", result.stderr)


class HopsfsTestCase(SimTestCase):
    """A simulated cluster plus HopsFS data node folders written by the test."""

    rows = 40

    def setUp(self):
        super().setUp()
        self.data_dirs = [os.path.join(self.tmp, f"node{i}", "dn") for i in (1, 2)]

    @staticmethod
    def block(index):
        """(id, genstamp, length) of the index-th test block."""
        return FIRST_BLOCK_ID + index * 37, 1001 + index, (index * 131) % 1500

    def block_paths(self, data_dir, block):
        """(blk_<id>, blk_<id>_<gs>.meta) of `block` in `data_dir`, laid out as HopsFS does."""
        block_id, genstamp, _ = block
        folder = os.path.join(data_dir, "current", POOL, "current", "finalized",
                              f"subdir{(block_id >> 16) & 0xff}", f"subdir{(block_id >> 8) & 0xff}")
        return (os.path.join(folder, f"blk_{block_id}"),
                os.path.join(folder, f"blk_{block_id}_{genstamp}.meta"))

    def write_block(self, data_dir, block):
        """Writes a finalized replica of `block` (and its .meta) into `data_dir`."""
        data, meta = self.block_paths(data_dir, block)
        os.makedirs(os.path.dirname(data), exist_ok=True)
        with open(data, "wb") as f:
            f.write(b"x" * block[2])
        with open(meta, "wb") as f:
            f.write(b"\x00\x01\x02\x00\x00\x02\x00")

    def write_blocks(self, count):
        """Blocks 0..count-1: even ones on node1, odd ones on node2, every tenth on both."""
        blocks = [self.block(i) for i in range(count)]
        for i, block in enumerate(blocks):
            self.write_block(self.data_dirs[i % 2], block)
            if i % 10 == 0:
                self.write_block(self.data_dirs[1 - i % 2], block)
        return blocks

    def name_blocks(self, dirs=None):
        """simctl blocks ROOT --data-dirs <the test's data dirs>."""
        return self.simctl("blocks", self.root, "--data-dirs", ",".join(dirs or self.data_dirs))

    def safemode(self, action="get", check=0, timeout=30):
        """hdfs dfsadmin -safemode <action>, as hdfs."""
        return self.run_sim("hdfs", "dfsadmin", "-safemode", action, user="hdfs", check=check,
                            timeout=timeout)

    def assert_safe_mode(self, state):
        """Checks what -safemode get prints."""
        self.assertEqual(self.safemode().stdout, f"Safe mode is {state}\n")


class HdfsSafeModeTest(HopsfsTestCase):
    """hdfs dfsadmin -safemode and simctl blocks."""

    def test_blocks_fills_the_metadata_and_the_data_dirs(self):
        blocks = self.write_blocks(30)
        self.assertEqual(self.name_blocks().stdout, "30 blocks\n")
        table = self.dump()["databases"]["hops"]["tables"]["hdfs_block_infos"]
        self.assertEqual(sorted(row[1:] for row in table["rows"]),
                         sorted([block_id, 0, length, genstamp]
                                for block_id, genstamp, length in blocks))
        self.assertEqual(sorted(row[0] for row in table["rows"]), list(range(1, 31)))
        config = hwdrsim.load_json(os.path.join(self.root, "hwdr-sim.json"))
        self.assertEqual(config["hopsfs_data_dirs"], self.data_dirs)
        self.assertEqual(config["socket"], SOCKET)
        self.assert_safe_mode("OFF")

    def test_threshold_is_99_9_percent_of_named_blocks(self):
        blocks = self.write_blocks(1000)
        self.name_blocks()
        self.assert_safe_mode("OFF")
        gone_data = self.block_paths(self.data_dirs[1], blocks[3])[0]
        gone_meta = self.block_paths(self.data_dirs[1], blocks[5])[1]
        os.unlink(gone_data)
        os.unlink(gone_meta)
        self.assert_safe_mode("ON")  # 998 of 1000: 99.8%
        self.write_block(self.data_dirs[0], blocks[3])  # back on another node
        self.assert_safe_mode("OFF")  # 999 of 1000: 99.9%
        self.write_block(self.data_dirs[1], blocks[5])
        self.assert_safe_mode("OFF")

    def test_small_trees_leave_safe_mode_with_one_block_missing(self):
        blocks = self.write_blocks(10)
        self.name_blocks()
        os.unlink(self.block_paths(self.data_dirs[1], blocks[1])[0])
        self.assert_safe_mode("OFF")  # 9 of 10: HopsFS needs (int) (10 * 0.999) = 9
        os.unlink(self.block_paths(self.data_dirs[1], blocks[3])[0])
        self.assert_safe_mode("ON")

    def test_only_finalized_blocks_with_the_named_genstamp_count(self):
        blocks = [self.block(i) for i in range(3)]  # 2 of 3 needed
        for block in blocks:
            self.write_block(self.data_dirs[0], block)
        os.makedirs(self.data_dirs[1])
        self.name_blocks()
        data, meta = self.block_paths(self.data_dirs[0], blocks[0])
        os.rename(meta, meta.replace(f"_{blocks[0][1]}.meta", f"_{blocks[0][1] + 1}.meta"))
        os.rename(data, data + ".moved")
        self.assert_safe_mode("OFF")
        os.rename(data + ".moved", data)  # block 0 is back, but with another genstamp
        for path in self.block_paths(self.data_dirs[0], blocks[1]):
            os.unlink(path)
        self.assert_safe_mode("ON")
        self.write_block(self.data_dirs[1], blocks[1])
        self.assert_safe_mode("OFF")
        rbw = os.path.join(self.data_dirs[1], "current", POOL, "current", "rbw")
        os.makedirs(rbw)
        for path in self.block_paths(self.data_dirs[1], blocks[1]):
            os.rename(path, os.path.join(rbw, os.path.basename(path)))
        self.assert_safe_mode("ON")  # a replica being written is not reported as finalized

    def test_no_named_blocks_is_off_and_named_blocks_without_data_dirs_are_on(self):
        self.assert_safe_mode("ON")  # the sample's block rows, no hopsfs_data_dirs
        os.makedirs(self.data_dirs[0])
        self.assertEqual(self.name_blocks(self.data_dirs[:1]).stdout, "0 blocks\n")
        self.assert_safe_mode("OFF")
        self.write_blocks(4)
        self.name_blocks()
        self.simctl("datadirs", self.root, os.path.join(self.tmp, "elsewhere"))
        self.assert_safe_mode("ON")
        self.simctl("datadirs", self.root, ",".join(self.data_dirs))
        self.assert_safe_mode("OFF")

    def test_wait_returns_once_the_blocks_are_back(self):
        blocks = self.write_blocks(20)
        self.name_blocks()
        self.assertEqual(self.safemode("wait").stdout, "Safe mode is OFF\n")
        for index in (2, 4):
            for path in self.block_paths(self.data_dirs[0], blocks[index]):
                os.unlink(path)
        argv, env = self.sim_command("hdfs", "dfsadmin", "-safemode", "wait", user="hdfs")
        waiter = subprocess.Popen(argv, env=env, cwd=self.work, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.addCleanup(waiter.kill)
        time.sleep(1)
        self.assertIsNone(waiter.poll())
        started = time.monotonic()
        self.write_block(self.data_dirs[1], blocks[2])
        stdout, stderr = waiter.communicate(timeout=10)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual((waiter.returncode, stdout, stderr), (0, "Safe mode is OFF\n", ""))

    def test_metadata_of_blocks_survives_backup_and_restore(self):
        blocks = self.write_blocks(10)
        self.name_blocks()
        self.start_backup(1)
        self.simctl("wipe", self.root)
        self.assertRegex(self.safemode(check=255).stderr, CONNECTION_REFUSED)
        self.ndb_restore(2, 1, "-m")
        self.assert_safe_mode("OFF")  # tables back, rows not yet: nothing named
        self.ndb_restore(2, 1, "-r")
        self.ndb_restore(3, 1, "-r")
        self.assert_safe_mode("OFF")
        for index in (4, 6):
            for path in self.block_paths(self.data_dirs[0], blocks[index]):
                os.unlink(path)
        self.assert_safe_mode("ON")

    def test_failure_modes(self):
        self.write_blocks(5)
        self.name_blocks()
        self.control("hdfs", "fail")
        for action in ("get", "wait"):
            result = self.safemode(action, check=255)
            self.assertEqual(result.stdout, "")
            self.assertRegex(result.stderr, CONNECTION_REFUSED)
        self.control("hdfs", "stuck-on")
        self.assert_safe_mode("ON")
        with self.assertRaises(subprocess.TimeoutExpired):
            self.safemode("wait", timeout=1.5)
        self.control("hdfs", "hang")
        with self.assertRaises(subprocess.TimeoutExpired):
            self.safemode("get", timeout=1.5)
        self.simctl("control", self.root, "hdfs", "--clear")
        self.assert_safe_mode("OFF")

    def test_command_line(self):
        result = self.run_sim("hdfs", user="hdfs", check=1)
        self.assertTrue(result.stdout.startswith("Usage: hdfs [OPTIONS] SUBCOMMAND "))
        result = self.run_sim("hdfs", "dfsadmn", "-safemode", "get", user="hdfs", check=1)
        self.assertEqual(result.stderr,
                         "ERROR: dfsadmn is not COMMAND nor fully qualified CLASSNAME.\n")
        self.assertIn("dfsadmin             run a DFS admin client\n", result.stdout)
        result = self.run_sim("hdfs", "dfsadmin", "-safemod", "get", user="hdfs", check=255)
        self.assertTrue(result.stderr.startswith(
            "safemod: Unknown command\nUsage: hdfs dfsadmin\n"))
        for args in (["-safemode"], ["-safemode", "off"], ["-safemode", "get", "now"]):
            result = self.run_sim("hdfs", "dfsadmin", *args, user="hdfs", check=255)
            self.assertEqual(result.stderr, "Usage: hdfs dfsadmin [-safemode enter | leave | get "
                                            "| wait | forceExit]\n")
        self.run_sim("hdfs", "dfsadmin", "-safemode", "leave", user="hdfs", check=2)
        result = self.run_sim("hdfs", "--config", "/srv/hops/hadoop/etc/hadoop", "dfsadmin",
                              "-D", "ipc.client.connect.max.retries=1", "-safemode", "GET",
                              user="hdfs", check=0)
        self.assertEqual(result.stdout, "Safe mode is ON\n")
        with open(os.path.join(self.state, "invocations.jsonl"), encoding="utf-8") as f:
            record = json.loads(f.readlines()[-1])
        self.assertEqual((record["program"], record["uid"]), ("hdfs", pwd.getpwnam("hdfs").pw_uid))

    def test_simctl_blocks_errors(self):
        missing = os.path.join(self.tmp, "nowhere")
        result = self.simctl("blocks", self.root, "--data-dirs", missing, check=False)
        self.assertEqual((result.returncode, result.stderr),
                         (1, f"simctl: no such data dir: {missing}\n"))
        os.makedirs(self.data_dirs[0])
        self.simctl("wipe", self.root)
        result = self.simctl("blocks", self.root, "--data-dirs", self.data_dirs[0], check=False)
        self.assertEqual((result.returncode, result.stderr),
                         (1, "simctl: the cluster has no table hops.hdfs_block_infos\n"))


class ReindexTest(SimTestCase):
    """reindex-epipe.sh."""

    def counts(self):
        """Rows of the tables the reindex reads."""
        databases = self.cluster()["databases"]
        return (len(databases["hopsworks"]["tables"]["project"]["rows"]),
                len(databases["hopsworks"]["tables"]["feature_group"]["rows"]),
                len(databases["hops"]["tables"]["hdfs_inodes"]["rows"]))

    def test_reindex_prints_and_records_its_counts(self):
        projects, groups, inodes = self.counts()
        before = time.time()
        result = self.run_sim("reindex-epipe.sh", check=0)
        self.assertEqual(result.stdout, (
            f"Reindexing hopsworks.project: {projects} projects\n"
            f"Reindexing hopsworks.feature_group: {groups} feature groups\n"
            f"Reindexing hops.hdfs_inodes: {inodes} inodes\n"
            f"Reindex done: {projects} projects, {groups} feature groups, {inodes} inodes\n"))
        self.run_sim("reindex-epipe.sh", user="root", check=0)
        self.assertEqual(self.simctl("reindexes", self.root).stdout, "2\n")
        with open(os.path.join(self.state, "reindex.jsonl"), encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        self.assertEqual([r["uid"] for r in records], [pwd.getpwnam("mysql").pw_uid, 0])
        self.assertEqual((records[0]["projects"], records[0]["feature_groups"],
                          records[0]["inodes"]), (projects, groups, inodes))
        self.assertLessEqual(before - 1, records[0]["time"])
        self.assertLessEqual(records[0]["time"], records[1]["time"])
        self.assertEqual(os.stat(os.path.join(self.state, "reindex.jsonl")).st_uid,
                         pwd.getpwnam("mysql").pw_uid)

    def test_epipe_running(self):
        self.control("reindex-epipe.sh", "epipe-running")
        result = self.run_sim("reindex-epipe.sh", user="root", check=1)
        self.assertEqual((result.stdout, result.stderr),
                         ("A Epipe server is already running. Kill it first.\n", ""))
        self.assertEqual(self.simctl("reindexes", self.root).stdout, "0\n")

    def test_fail_hang_and_wiped_cluster(self):
        self.control("reindex-epipe.sh", "fail")
        self.assertIn("Connection refused", self.run_sim("reindex-epipe.sh", check=1).stderr)
        self.control("reindex-epipe.sh", "hang")
        with self.assertRaises(subprocess.TimeoutExpired):
            self.run_sim("reindex-epipe.sh", timeout=1.5)
        self.simctl("control", self.root, "reindex-epipe.sh", "--clear")
        self.simctl("wipe", self.root)
        result = self.run_sim("reindex-epipe.sh", check=1)
        self.assertEqual(result.stderr, "[error] Failed to get table hopsworks.project: "
                                        "723: No such table existed\n")
        self.assertEqual(self.simctl("reindexes", self.root).stdout, "0\n")


class KafkaRestoreTest(SimTestCase):
    """kafka-restore.sh."""

    def topic_rows(self):
        """(name, partitions, replicas) of hopsworks.project_topics, by id."""
        table = self.cluster()["databases"]["hopsworks"]["tables"]["project_topics"]
        return [(row["topic_name"], row["num_partitions"], row["num_replicas"])
                for row in hwdrsim.rows_as_dicts(table)]

    def restore(self, check=0):
        """kafka-restore.sh as root."""
        return self.run_sim("kafka-restore.sh", user="root", check=check)

    def topics(self):
        """simctl topics as a document."""
        return json.loads(self.simctl("topics", self.root).stdout)

    def test_topics_created_once(self):
        rows = self.topic_rows()
        self.assertGreater(len(rows), 5)
        with_config = [row for row in rows if None not in row[1:]]
        self.assertLess(len(with_config), len(rows))  # the sample has a NULL configuration
        expected_lines = []
        for name, partitions, replicas in rows:
            if partitions is None or replicas is None:
                expected_lines.append(f"Skipping creating topic: {name} as configuration is NULL")
            else:
                expected_lines += [f"Creating topic: {name}", f"Created topic {name}."]
        result = self.restore()
        self.assertEqual(result.stdout.splitlines(), expected_lines)
        self.assertEqual(self.topics(), {name: {"partitions": p, "replicas": r}
                                         for name, p, r in with_config})
        path = os.path.join(self.state, "kafka_topics.json")
        self.assertEqual(os.stat(path).st_uid, pwd.getpwnam("mysql").pw_uid)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), self.simctl("topics", self.root).stdout)
        again = self.restore()
        self.assertNotIn("Created topic", again.stdout)
        self.assertEqual(len(again.stdout.splitlines()), len(rows))
        self.assertEqual(self.topics(), {name: {"partitions": p, "replicas": r}
                                         for name, p, r in with_config})

    def test_existing_topic_is_left_alone(self):
        name = self.topic_rows()[0][0]
        self.restore()
        with open(os.path.join(self.state, "kafka_topics.json"), "w", encoding="utf-8") as f:
            json.dump({name: {"partitions": 1, "replicas": 1}}, f)
        result = self.restore()
        self.assertNotIn(f"Created topic {name}.", result.stdout)
        self.assertEqual(result.stdout.count("Created topic "), len(self.topics()) - 1)
        self.assertEqual(self.topics()[name], {"partitions": 1, "replicas": 1})

    def test_wiped_cluster_fails_like_mysql(self):
        self.restore()
        self.simctl("wipe", self.root)
        self.assertEqual(self.topics(), {})
        result = self.restore(check=1)
        self.assertEqual((result.stdout, result.stderr), ("", NO_TOPICS_TABLE))
        self.control("kafka-restore.sh", "no-pipefail")
        result = self.restore(check=0)
        self.assertEqual((result.stdout, result.stderr), ("", NO_TOPICS_TABLE))
        self.assertEqual(self.topics(), {})

    def test_fail_hang_and_non_root(self):
        first = self.topic_rows()[0][0]
        self.control("kafka-restore.sh", "fail")
        result = self.restore(check=1)
        self.assertEqual(result.stdout, f"Creating topic: {first}\n")
        self.assertTrue(result.stderr.startswith(
            "Error while executing topic command : Timed out waiting for a node assignment. "
            "Call: createTopics\n"))
        self.assertEqual(self.topics(), {})
        self.control("kafka-restore.sh", "hang")
        with self.assertRaises(subprocess.TimeoutExpired):
            self.run_sim("kafka-restore.sh", user="root", timeout=1.5)
        self.simctl("control", self.root, "kafka-restore.sh", "--clear")
        result = self.run_sim("kafka-restore.sh", check=1)
        self.assertIn("must run as root", result.stderr)
        self.assertEqual(self.topics(), {})


if __name__ == "__main__":
    unittest.main()
