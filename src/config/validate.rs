//! The error collector every section validates into: checks shared by the
//! sections, each error named `file: [section] key`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::parse_duration;
use super::load::Origins;

/// Every error of the configuration, collected so all are reported at once.
pub(super) struct Errors<'a> {
    origins: &'a Origins,
    list: Vec<String>,
}

impl<'a> Errors<'a> {
    pub(super) fn new(origins: &'a Origins) -> Errors<'a> {
        Errors {
            origins,
            list: Vec::new(),
        }
    }

    /// The checks of the keys of table `[name]`.
    pub(super) fn section<'e>(&'e mut self, name: &'static str) -> Section<'e, 'a> {
        Section { errors: self, name }
    }

    /// The file that set `path` (`nodes`), for errors not of a table key.
    pub(super) fn file_of(&self, path: &str) -> String {
        self.origins.file_of(path).to_owned()
    }

    /// Records an error already worded with its file.
    pub(super) fn push(&mut self, error: String) {
        self.list.push(error);
    }

    /// The errors, in the order they were found.
    pub(super) fn into_list(self) -> Vec<String> {
        self.list
    }
}

/// The checks of one table section; errors are named `file: [section] key`.
pub(super) struct Section<'e, 'a> {
    errors: &'e mut Errors<'a>,
    name: &'static str,
}

impl Section<'_, '_> {
    /// Records `msg` against `key`.
    pub(super) fn err(&mut self, key: &str, msg: impl fmt::Display) {
        let at = self.errors.origins.key(self.name, key);
        self.errors.list.push(format!("{at}: {msg}"));
    }

    /// A string that must be set and not blank.
    pub(super) fn required(&mut self, key: &str, value: Option<String>) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v,
            Some(_) => {
                self.err(key, "must not be empty");
                String::new()
            }
            None => {
                self.err(key, "is required");
                String::new()
            }
        }
    }

    /// An absolute path, `default` when not set.
    pub(super) fn abs_path(&mut self, key: &str, value: Option<String>, default: &str) -> PathBuf {
        let value = value.unwrap_or_else(|| default.to_owned());
        let path = PathBuf::from(&value);
        if !path.is_absolute() {
            self.err(key, format!("'{value}' must be an absolute path"));
        }
        path
    }

    /// A duration such as `90s` or `1h30m`, `default` when not set.
    pub(super) fn duration(&mut self, key: &str, value: Option<String>, default: Duration) -> Duration {
        match value.map(|v| parse_duration(&v)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(key, e);
                default
            }
        }
    }

    /// A number from `min` to 10000, `default` when not set.
    pub(super) fn count(&mut self, key: &str, value: Option<i64>, default: usize, min: usize) -> usize {
        match value {
            None => default,
            Some(n) if n >= min as i64 && n <= 10_000 => n as usize,
            Some(n) => {
                self.err(key, format!("{n} must be between {min} and 10000"));
                default
            }
        }
    }

    /// An argv list: absolute program, no empty elements.
    pub(super) fn argv(&mut self, key: &str, value: Option<Vec<String>>, default: &[&str]) -> Vec<String> {
        let argv = value.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
        match argv.first() {
            None => self.err(key, "must name a program"),
            Some(p) if !Path::new(p).is_absolute() => self.err(key, format!("'{p}' must be an absolute path")),
            _ => {}
        }
        if argv.iter().any(|a| a.is_empty() || a.contains('\0')) {
            self.err(key, "arguments must not be empty");
        }
        argv
    }

    /// A `host:port` address.
    pub(super) fn address(&mut self, key: &str, address: &str) {
        if let Err(e) = check_address(address) {
            self.err(key, e);
        }
    }
}

/// Whether `address` is `host:port`; the error says what is wrong.
pub(super) fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("'{address}' must be host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
        return Err(format!("'{address}' has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("'{address}' has no valid port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in ["head1:7878", "10.0.0.1:1186", "[::1]:7878"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_address("head1"), Err("'head1' must be host:port".into()));
        assert_eq!(check_address(":7878"), Err("':7878' has no valid host".into()));
        assert_eq!(check_address("a b:1"), Err("'a b:1' has no valid host".into()));
        assert_eq!(check_address("head1:0"), Err("'head1:0' has no valid port".into()));
        assert_eq!(check_address("head1:x"), Err("'head1:x' has no valid port".into()));
    }
}
