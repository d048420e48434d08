//! The one way hwdr runs an external program: by argv (never a shell line), as
//! the configured user, with a clean environment and a timeout, its output
//! streamed line by line into the log and kept for checking.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{anyhow, Result};
use nix::unistd::{Gid, Uid};
use zeroize::Zeroizing;

use crate::job::JobControl;

mod process;

pub use process::run;

/// How many trailing output lines are kept for error messages.
const TAIL_LINES: usize = 20;
/// How much stdout is kept for parsing.
const MAX_CAPTURE: usize = 4 << 20;
/// How long a program gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often the wait checks for a timeout or a stop request.
const POLL: Duration = Duration::from_millis(100);

/// A user to run a program as, resolved from the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups, as `initgroups` would set them.
    pub groups: Vec<Gid>,
    pub home: PathBuf,
}

impl RunAs {
    /// Looks `name` up; `key` names the config key for the error
    /// (`hwdr.d/20-rondb.toml: [rondb] user`).
    pub fn lookup(name: &str, key: &str) -> Result<RunAs> {
        let user = uzers::get_user_by_name(name).ok_or_else(|| anyhow!("{key}: no such user '{name}'"))?;
        let gid = Gid::from_raw(user.primary_group_id());
        let groups = uzers::get_user_groups(name, user.primary_group_id())
            .map(|gs| gs.iter().map(|g| Gid::from_raw(g.gid())).collect())
            .unwrap_or_else(|| vec![gid]);
        Ok(RunAs {
            name: name.to_owned(),
            uid: Uid::from_raw(user.uid()),
            gid,
            groups,
            home: uzers::os::unix::UserExt::home_dir(&user).to_path_buf(),
        })
    }

    /// The superuser, for the steps the runbook runs as root.
    pub fn root() -> RunAs {
        RunAs {
            name: "root".into(),
            uid: Uid::from_raw(0),
            gid: Gid::from_raw(0),
            groups: vec![Gid::from_raw(0)],
            home: "/root".into(),
        }
    }
}

/// Where a program's standard output goes.
#[derive(Debug)]
pub enum StdoutTo {
    /// Logged line by line and kept in [`Outcome::stdout`].
    Capture,
    /// Kept in [`Outcome::stdout`] for hwdr to read, logged only at debug
    /// level: data (a list of names), not messages for the journal.
    Data,
    /// Written to this file, not logged (it may hold secrets such as password hashes).
    File(File),
}

/// Bytes nobody may see: a program's standard input holding a password,
/// or the password itself, hidden in the program's output. `Debug` shows
/// nothing, and the bytes are zeroed when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    /// The bytes, for the one place that hands them over.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// What stands in an output line for a hidden secret.
pub const HIDDEN: &str = "<hidden>";

/// One program to run.
#[derive(Debug)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub user: RunAs,
    pub timeout: Duration,
    pub stdout: StdoutTo,
    /// The job the program belongs to: cancelling it kills the program.
    pub control: Option<JobControl>,
    /// Runs to its end (or its timeout) even when hwdr is stopping: a
    /// clean-up that must happen because hwdr stops.
    pub unstoppable: bool,
    /// Written to the program's standard input through a pipe, which is
    /// then closed; `None`: stdin is `/dev/null`. Never shown.
    pub stdin: Option<Secret>,
    /// Replaced by [`HIDDEN`] in every output line logged or kept.
    pub hidden: Vec<Secret>,
}

impl Cmd {
    /// A command with stdout captured.
    pub fn new(program: impl Into<PathBuf>, user: RunAs, timeout: Duration) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            user,
            timeout,
            stdout: StdoutTo::Capture,
            control: None,
            unstoppable: false,
            stdin: None,
            hidden: Vec::new(),
        }
    }

    /// Hands `input` to the program on its standard input (then closed):
    /// how a password reaches a program without being in its argv, which
    /// every user of the host can read in `ps`.
    pub fn stdin_secret(mut self, input: Secret) -> Cmd {
        self.stdin = Some(input);
        self
    }

    /// Hides `secret` in the program's output (should it echo what it
    /// read), in the log and in the kept lines alike.
    pub fn hide(mut self, secret: Secret) -> Cmd {
        if !secret.expose().is_empty() {
            self.hidden.push(secret);
        }
        self
    }

    /// Lets the program run to its end (or timeout) even when hwdr was asked
    /// to stop: for the clean-up a stop itself needs.
    pub fn unstoppable(mut self) -> Cmd {
        self.unstoppable = true;
        self
    }

    /// Kills the program when `control`'s job is cancelled.
    pub fn stopped_by(mut self, control: &JobControl) -> Cmd {
        self.control = Some(control.clone());
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Keeps stdout for hwdr to read, out of the log (see [`StdoutTo::Data`]).
    pub fn stdout_is_data(mut self) -> Cmd {
        self.stdout = StdoutTo::Data;
        self
    }

    /// Sends stdout to `file` instead of the log.
    pub fn stdout_to(mut self, file: File) -> Cmd {
        self.stdout = StdoutTo::File(file);
        self
    }

    /// The argv as one line for people: each element quoted when needed.
    pub fn argv_display(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "as {}: {}", self.user.name, self.argv_display())
    }
}

/// Quotes an argument the way a person would type it, for display only.
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// What a finished program did.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    /// Standard output (empty when it went to a file).
    pub stdout: String,
    /// The last lines of stdout and stderr, interleaved as read.
    pub tail: Vec<String>,
}

impl Outcome {
    /// Fails unless the program exited 0; `what` names it in the error.
    pub fn check(&self, what: &str) -> Result<(), ProgramFailed> {
        if self.status.success() {
            return Ok(());
        }
        Err(self.failed(what, Failure::Status(self.status)))
    }

    /// The error for program `what` that failed as `how`, with this outcome's tail.
    pub fn failed(&self, what: &str, how: Failure) -> ProgramFailed {
        ProgramFailed {
            program: what.to_owned(),
            status: how,
            tail: self.tail.clone(),
        }
    }
}

/// A program that ran and failed: which, how, and the last lines of its
/// output. Whoever keeps that output (a restore's state) takes it from the
/// error chain (`downcast_ref`), never out of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ProgramFailed {
    /// The program as the message names it (`ndb_restore`, `mysql (SHOW DATABASES)`).
    pub program: String,
    /// How it failed.
    pub status: Failure,
    /// Its last output lines, stdout and stderr interleaved as read.
    pub tail: Vec<String>,
}

/// How a program failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It exited non-zero, or a signal killed it.
    Status(ExitStatus),
    /// It ran past its timeout and was killed.
    TimedOut(Duration),
    /// It exited 0, but this line of its output reports a failure.
    Reported(String),
    /// It exited 0, but printed this `ERROR` line.
    ErrorLine(String),
    /// It exited 0, but its output lacks what it should say: why.
    Unreadable(String),
}

impl fmt::Display for ProgramFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (program, tail) = (&self.program, tail_text(&self.tail));
        match &self.status {
            Failure::Status(status) => write!(f, "{program} {}; last output:{tail}", describe(*status)),
            Failure::TimedOut(after) => write!(
                f,
                "{program} timed out after {}s and was killed; last output:{tail}",
                after.as_secs()
            ),
            Failure::Reported(line) => write!(
                f,
                "{program} exited 0 but reported a failure: {line}; last output:{tail}"
            ),
            // The ERROR line says it all; the tail stays in the value.
            Failure::ErrorLine(line) => write!(f, "{program} exited 0 but reported: {line}"),
            Failure::Unreadable(why) => write!(f, "{why}; output was:{tail}"),
        }
    }
}

/// Output lines as one indented block for error messages.
fn tail_text(tail: &[String]) -> String {
    tail.iter().map(|l| format!("\n    {l}")).collect()
}

/// "exited with status 2" or "was killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended for an unknown reason".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> RunAs {
        let uid = Uid::effective();
        let user = uzers::get_user_by_uid(uid.as_raw()).unwrap();
        RunAs::lookup(&user.name().to_string_lossy(), "test").unwrap()
    }

    #[test]
    fn captures_stdout_and_status_without_a_shell() {
        let out = run(Cmd::new("/bin/echo", me(), Duration::from_secs(10)).arg("a b; $(true)")).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "a b; $(true)\n");
    }

    #[test]
    fn environment_is_clean() {
        std::env::set_var("HWDR_TEST_SECRET", "x");
        let out = run(Cmd::new("/usr/bin/env", me(), Duration::from_secs(10))).unwrap();
        let mut names: Vec<_> = out.stdout.lines().map(|l| l.split('=').next().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["HOME", "LANG", "LOGNAME", "PATH", "USER"]);
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let start = std::time::Instant::now();
        let err =
            run(Cmd::new("/bin/sh", me(), Duration::from_millis(300)).args(["-c", "sleep 60 & sleep 60"])).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn failure_keeps_the_output_tail() {
        let out =
            run(Cmd::new("/bin/sh", me(), Duration::from_secs(10)).args(["-c", "echo one; echo two >&2; exit 3"]))
                .unwrap();
        let err = out.check("sh").unwrap_err().to_string();
        assert!(err.contains("exited with status 3"), "{err}");
        assert!(err.contains("one") && err.contains("two"), "{err}");
    }

    fn outcome(code: i32, tail: &[&str]) -> Outcome {
        Outcome {
            status: ExitStatus::from_raw(code << 8),
            stdout: String::new(),
            tail: tail.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn a_failed_program_is_a_typed_error_with_its_tail() {
        let failed = outcome(3, &["one", "two"]).check("sh").unwrap_err();
        assert_eq!(
            failed,
            ProgramFailed {
                program: "sh".into(),
                status: Failure::Status(ExitStatus::from_raw(3 << 8)),
                tail: vec!["one".into(), "two".into()],
            }
        );
        assert!(outcome(0, &["fine"]).check("sh").is_ok());
        // Found in a chain of context, as a restore looks for it.
        let err = anyhow::Error::new(failed).context("replaying users.sql");
        let found = err.chain().find_map(|c| c.downcast_ref::<ProgramFailed>()).unwrap();
        assert_eq!(found.tail, ["one", "two"]);
    }

    #[test]
    fn a_failed_program_reads_as_before() {
        let out = outcome(0, &["Restored 10 tuples", "NDBT_ProgramExit: 1 - Failed"]);
        let texts = [
            (
                outcome(3, &["one", "two"]).check("sh").unwrap_err(),
                "sh exited with status 3; last output:\n    one\n    two",
            ),
            (
                Outcome {
                    status: ExitStatus::from_raw(9),
                    ..outcome(0, &["x"])
                }
                .check("mysqldump")
                .unwrap_err(),
                "mysqldump was killed by signal 9; last output:\n    x",
            ),
            (
                out.failed("mgm-client.sh", Failure::TimedOut(Duration::from_secs(2))),
                "mgm-client.sh timed out after 2s and was killed; last output:\n    Restored 10 tuples\n    NDBT_ProgramExit: 1 - Failed",
            ),
            (
                out.failed("ndb_restore", Failure::Reported("NDBT_ProgramExit: 1 - Failed".into())),
                "ndb_restore exited 0 but reported a failure: NDBT_ProgramExit: 1 - Failed; last output:\n    Restored 10 tuples\n    NDBT_ProgramExit: 1 - Failed",
            ),
            (
                outcome(0, &["ERROR 1396"]).failed("mysql-client.sh", Failure::ErrorLine("ERROR 1396".into())),
                "mysql-client.sh exited 0 but reported: ERROR 1396",
            ),
            (
                outcome(0, &["Node 2: Backup 5 started"]).failed("mgm-client.sh", Failure::Unreadable("START BACKUP did not report that backup 5 completed".into())),
                "START BACKUP did not report that backup 5 completed; output was:\n    Node 2: Backup 5 started",
            ),
        ];
        for (failed, text) in texts {
            assert_eq!(failed.to_string(), text);
        }
    }

    #[test]
    fn a_timeout_is_a_typed_error_with_its_tail() {
        let err = run(Cmd::new("/bin/sh", me(), Duration::from_millis(300)).args(["-c", "echo started; sleep 60"]))
            .unwrap_err();
        let failed = err.downcast_ref::<ProgramFailed>().unwrap();
        assert_eq!(
            (failed.program.as_str(), &failed.status, failed.tail.as_slice()),
            (
                "sh",
                &Failure::TimedOut(Duration::from_millis(300)),
                ["started".to_owned()].as_slice()
            )
        );
        assert_eq!(
            err.to_string(),
            "sh timed out after 0s and was killed; last output:\n    started"
        );
    }

    #[test]
    fn a_secret_goes_in_on_stdin_and_never_comes_out() {
        let pw = "s3cret-Pa55word";
        let cmd = Cmd::new("/bin/sh", me(), Duration::from_secs(10))
            .args(["-c", "read -r line; echo \"read: $line\"; echo \"again: $line\" >&2"])
            .stdin_secret(Secret::new(format!("PASSWORD='{pw}'\n").into_bytes()))
            .hide(Secret::new(pw.as_bytes().to_vec()));
        assert!(!cmd.argv_display().contains(pw) && !format!("{cmd:?}").contains(pw));
        let out = run(cmd).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "read: PASSWORD='<hidden>'\n");
        // stdout and stderr are read side by side: either may come first.
        let mut tail = out.tail.clone();
        tail.sort();
        assert_eq!(tail, ["again: PASSWORD='<hidden>'", "read: PASSWORD='<hidden>'"]);
    }

    #[test]
    fn a_secret_reaches_a_program_run_as_another_user() {
        if !Uid::effective().is_root() || uzers::get_user_by_name("nobody").is_none() {
            return;
        }
        let nobody = RunAs::lookup("nobody", "test").unwrap();
        let cmd = Cmd::new("/bin/sh", nobody.clone(), Duration::from_secs(10))
            .args(["-c", "id -u; wc -c"])
            .stdin_secret(Secret::new(b"0123456789".to_vec()));
        let out = run(cmd).unwrap();
        assert_eq!(out.stdout, format!("{}\n10\n", nobody.uid));
    }

    #[test]
    fn a_program_that_never_reads_its_input_still_times_out() {
        let start = std::time::Instant::now();
        // More than a pipe holds: the writer blocks until the program is killed.
        let cmd = Cmd::new("/bin/sleep", me(), Duration::from_millis(300))
            .arg("60")
            .stdin_secret(Secret::new(vec![b'x'; 1 << 20]));
        let err = run(cmd).unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(30));
        // One that exits without reading is not an error of the runner's.
        let cmd = Cmd::new("/bin/true", me(), Duration::from_secs(10)).stdin_secret(Secret::new(vec![b'x'; 1 << 20]));
        assert!(run(cmd).unwrap().status.success());
    }

    #[test]
    fn unknown_user_names_the_key() {
        let err = RunAs::lookup("no-such-user-hwdr", "hwdr.d/20-rondb.toml: [rondb] user").unwrap_err();
        assert_eq!(
            err.to_string(),
            "hwdr.d/20-rondb.toml: [rondb] user: no such user 'no-such-user-hwdr'"
        );
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(quote("-e"), "-e");
        assert_eq!(quote("START BACKUP 1"), "'START BACKUP 1'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
