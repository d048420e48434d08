//! The SQL files read through before a restore starts: `users.sql` and
//! `schemas.sql` are replayed last, after RonDB is restored, so damage to
//! them (a changed byte, or a sealed object that fails its tags in an
//! encrypted repository) must be found before the first step, not then.

use super::Restore;
use crate::repo::Repository;
use crate::rondb::dump::{SCHEMAS_FILE, USERS_FILE};

impl Restore<'_> {
    /// What is wrong with the backup's SQL files, each read through and
    /// checked against the manifest (and authenticated where sealed), one
    /// line per file; a file `reported` already names is not read again.
    pub(super) fn sql_problems(&self, reported: &[String]) -> Vec<String> {
        let backup = Repository::of(self.config).reader(self.manifest.backup_id);
        let mut problems = Vec::new();
        for f in self.manifest.files() {
            let named = format!("{}: ", f.path);
            if ![USERS_FILE, SCHEMAS_FILE].contains(&f.path.as_str()) || reported.iter().any(|p| p.starts_with(&named))
            {
                continue;
            }
            match backup.check(f) {
                Ok(None) => {}
                Ok(Some(why)) => problems.push(format!("{named}{why}")),
                Err(e) => problems.push(format!("{named}{e:#}")),
            }
        }
        problems
    }
}
