//! Running a [`Cmd`]: the child process with a clean environment in its own
//! process group (switching users when asked), its output read line by line
//! into the log, and the wait with its timeout and cancellation (the whole
//! group killed).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Pid, Uid};
use tracing::{debug, info, warn, Level, Span};

use super::{
    describe, Cmd, Failure, Outcome, ProgramFailed, Secret, StdoutTo, HIDDEN, KILL_GRACE, MAX_CAPTURE, POLL, TAIL_LINES,
};
use crate::job::JobControl;

/// Runs `cmd` to completion. Errors when it cannot start, when hwdr would have
/// to switch users without being root, or when it times out (a
/// [`ProgramFailed`]); a non-zero exit is returned in the [`Outcome`] for the
/// caller to judge with its output.
pub fn run(mut cmd: Cmd) -> Result<Outcome> {
    let me = Uid::effective();
    let switch = me != cmd.user.uid;
    if switch && !me.is_root() {
        bail!(
            "hwdr runs as uid {me} and cannot switch to user '{}' to run {}: run it as root",
            cmd.user.name,
            cmd.program.display()
        );
    }
    let argv_line = cmd.argv_display();
    let name = program_name(&cmd.program);
    let stdout = std::mem::replace(&mut cmd.stdout, StdoutTo::Capture);
    let data = matches!(stdout, StdoutTo::Data);
    let (mut command, capture) = command_of(&cmd, stdout, switch);
    let input = if cmd.stdin.is_some() {
        " (with a secret on stdin)"
    } else {
        ""
    };
    info!(program = %name, user = %cmd.user.name, argv = %argv_line, "running {argv_line}{input}");
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {} as {}", cmd.program.display(), cmd.user.name))?;
    let pgid = Pid::from_raw(child.id() as i32);
    let writer = cmd
        .stdin
        .take()
        .zip(child.stdin.take())
        .map(|(secret, pipe)| spawn_writer(pipe, secret, name.clone()));

    let (readers, line_rx) = spawn_readers(&mut child, &name, std::mem::take(&mut cmd.hidden), data);

    let control = if cmd.unstoppable { None } else { cmd.control.as_ref() };
    let status = wait_with_timeout(child, pgid, cmd.timeout, control, !cmd.unstoppable);
    // The program is gone and its pipe with it: the writer has ended.
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    for reader in readers {
        let _ = reader.join();
    }
    let (stdout, tail) = collect(line_rx, capture);
    match status? {
        Some(status) => {
            if !status.success() {
                warn!(program = %name, "{name} {}", describe(status));
            }
            Ok(Outcome { status, stdout, tail })
        }
        None => Err(ProgramFailed {
            program: name,
            status: Failure::TimedOut(cmd.timeout),
            tail,
        }
        .into()),
    }
}

/// The process `cmd` describes: a clean environment, the user's home as
/// its folder, its own process group, stderr piped, and `stdout` piped
/// (then `true`: captured) or into its file; with `switch`, the user's
/// groups and ids set before exec.
fn command_of(cmd: &Cmd, stdout: StdoutTo, switch: bool) -> (std::process::Command, bool) {
    let mut command = std::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", &cmd.user.home)
        .env("USER", &cmd.user.name)
        .env("LOGNAME", &cmd.user.name)
        .current_dir(if cmd.user.home.is_dir() {
            &cmd.user.home
        } else {
            Path::new("/")
        })
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .process_group(0);
    let capture = match stdout {
        StdoutTo::Capture | StdoutTo::Data => {
            command.stdout(Stdio::piped());
            true
        }
        StdoutTo::File(file) => {
            command.stdout(Stdio::from(file));
            false
        }
    };
    if switch {
        let user = cmd.user.clone();
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe syscalls (setgroups, setgid, setuid) on data prepared
        // before the fork; it does not allocate.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setgroups(&user.groups).map_err(std::io::Error::from)?;
                nix::unistd::setgid(user.gid).map_err(std::io::Error::from)?;
                nix::unistd::setuid(user.uid).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
    }
    (command, capture)
}

/// The captured stdout (up to `MAX_CAPTURE`, when `capture`) and the last
/// `TAIL_LINES` lines of both streams, from the readers' lines.
fn collect(lines: mpsc::Receiver<(bool, String)>, capture: bool) -> (String, Vec<String>) {
    let mut stdout = String::new();
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for (is_err, line) in lines.try_iter() {
        if !is_err && capture && stdout.len() < MAX_CAPTURE {
            stdout.push_str(&line);
            stdout.push('\n');
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    (stdout, tail.into())
}

fn program_name(program: &Path) -> String {
    program
        .file_name()
        .map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Threads reading the child's stdout and stderr (as far as piped) line by
/// line, `hidden` scrubbed, into the receiver; stdout logged at debug level
/// only when it is `data`.
fn spawn_readers(
    child: &mut Child,
    name: &str,
    hidden: Vec<Secret>,
    data: bool,
) -> (Vec<thread::JoinHandle<()>>, mpsc::Receiver<(bool, String)>) {
    let (line_tx, line_rx) = mpsc::channel::<(bool, String)>();
    let hidden = Arc::new(hidden);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let level = if data { Level::DEBUG } else { Level::INFO };
        readers.push(spawn_reader(
            out,
            level,
            line_tx.clone(),
            name.to_owned(),
            hidden.clone(),
        ));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, Level::WARN, line_tx, name.to_owned(), hidden));
    }
    (readers, line_rx)
}

/// Writes `secret` to the program's stdin and closes it, in a thread of its
/// own: a program that reads late (or never) cannot stall the wait and its
/// timeout. A program that ends without reading it breaks the pipe, which
/// is no error of hwdr's.
fn spawn_writer(mut pipe: std::process::ChildStdin, secret: Secret, program: String) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        if let Err(e) = pipe.write_all(secret.expose()).and_then(|()| pipe.flush()) {
            debug!(program = %program, "{program} did not read all of its input: {e}");
        }
    })
}

/// `line` with every hidden secret replaced by [`HIDDEN`].
fn scrub(line: String, hidden: &[Secret]) -> String {
    hidden.iter().fold(line, |line, secret| {
        let secret = String::from_utf8_lossy(secret.expose());
        if line.contains(secret.as_ref()) {
            line.replace(secret.as_ref(), HIDDEN)
        } else {
            line
        }
    })
}

/// A thread logging `stream` line by line at `level` (stderr: WARN) and
/// sending the lines on.
fn spawn_reader<R: Read + Send + 'static>(
    stream: R,
    level: Level,
    tx: mpsc::Sender<(bool, String)>,
    program: String,
    hidden: Arc<Vec<Secret>>,
) -> thread::JoinHandle<()> {
    let span = Span::current();
    thread::spawn(move || {
        let _entered = span.enter();
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
            let line = scrub(line, &hidden);
            let is_err = level == Level::WARN;
            match level {
                Level::WARN => warn!(program = %program, stream = "stderr", "{line}"),
                Level::INFO => info!(program = %program, stream = "stdout", "{line}"),
                _ => debug!(program = %program, stream = "stdout", "{line}"),
            }
            if tx.send((is_err, line)).is_err() {
                break;
            }
        }
    })
}

/// Waits for the child; on timeout kills its whole process group (TERM, then
/// KILL) and returns `None`. A stop request kills it too and is an error.
fn wait_with_timeout(
    mut child: Child,
    pgid: Pid,
    timeout: Duration,
    control: Option<&JobControl>,
    on_signal: bool,
) -> Result<Option<ExitStatus>> {
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = Instant::now() + timeout;
    let mut cancelled = false;
    let status = loop {
        match rx.recv_timeout(POLL) {
            Ok(status) => break Some(status.context("waiting for the program")?),
            Err(_) if (on_signal && crate::cancel::requested()) || control.is_some_and(JobControl::is_cancelled) => {
                cancelled = true;
                break None;
            }
            Err(_) if Instant::now() >= deadline => break None,
            Err(_) => {}
        }
    };
    if status.is_none() {
        let _ = killpg(pgid, Signal::SIGTERM);
        if rx.recv_timeout(KILL_GRACE).is_err() {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = rx.recv();
        }
    }
    // Anything the program left behind in its group is a stray: end it so the
    // output pipes close.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = waiter.join();
    if cancelled {
        // The job's own reason (or the signal's) says why.
        if let Some(control) = control {
            control.check()?;
        }
        crate::cancel::check()?;
        bail!("stopped while the program ran; it was killed");
    }
    Ok(status)
}
