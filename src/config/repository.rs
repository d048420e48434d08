//! `[repository]`: where the backups are kept: a folder every node mounts
//! (`path`), or a bucket every node reaches (`url`, with the keys of object
//! storage). Credentials never come from this file: see [`ObjectSettings`].

use std::path::PathBuf;
use std::time::Duration;

pub use crate::repo::keys::KeySource;

use super::raw::RawRepository;
use super::validate::Errors;
use super::validate::Section;

/// `[repository]`, validated.
#[derive(Debug, Clone)]
pub struct RepositorySettings {
    pub location: RepositoryLocation,
    /// How many files a node stores or fetches at once (1 to 64): blocks and
    /// RonDB parts of a backup, blocks staged for a restore.
    pub upload_parallelism: usize,
    /// What opens an encrypted repository's data key on this node.
    pub key: Option<KeySource>,
    /// The zstd level of sealed objects (an encrypted repository's), `None`
    /// for none.
    pub compression: Option<i32>,
}

/// Where the repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryLocation {
    /// A folder, the same on every node (`path`).
    Path(PathBuf),
    /// A bucket and prefix (`url`).
    Object(Box<ObjectSettings>),
}

/// Which object storage a `url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectScheme {
    /// `s3://`: AWS S3 or an S3-compatible server (MinIO, Ceph RGW, Garage).
    S3,
    /// `gs://`: Google Cloud Storage.
    Gcs,
    /// `az://`: Azure Blob Storage (the bucket is the container).
    Azure,
}

/// A repository in object storage. The credentials come from
/// `credentials_file` (root's, mode 0600) or, without it, from the standard
/// places of each cloud: the environment, web identity, instance metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSettings {
    /// The URL as written, for messages: `s3://bucket/prefix`.
    pub url: String,
    pub scheme: ObjectScheme,
    pub bucket: String,
    /// The folder in the bucket, without slashes at its ends; may be empty.
    pub prefix: String,
    /// An S3-compatible server's address (`https://s3.example.com:9000`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers need.
    pub path_style: bool,
    /// Certificates (PEM) to trust for a private endpoint.
    pub ca_file: Option<PathBuf>,
    /// S3: an AWS shared-credentials file; GCS: a service account JSON;
    /// Azure: `account_name` and `account_key` lines.
    pub credentials_file: Option<PathBuf>,
    /// The profile of an S3 credentials file.
    pub profile: String,
    /// The size of each part of a multipart upload; files up to it go up in
    /// one request.
    pub part_size: usize,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How often a request failing transiently (5xx, timeouts, resets) is
    /// retried, and for how long at most.
    pub retries: usize,
    pub retry_timeout: Duration,
}

impl RepositorySettings {
    /// Validates `[repository]`: exactly one of `path` and `url`.
    pub(super) fn from_raw(raw: RawRepository, errors: &mut Errors) -> RepositorySettings {
        let mut s = errors.section("repository");
        let upload_parallelism = s.count("upload_parallelism", raw.upload_parallelism, 4, 1);
        if upload_parallelism > 64 {
            s.err(
                "upload_parallelism",
                format!("{upload_parallelism} must be between 1 and 64"),
            );
        }
        let key = key_source(&raw, &mut s);
        let compression = match raw.compression_level {
            None => Some(3),
            Some(0) => None,
            Some(n @ 1..=19) => Some(n as i32),
            Some(n) => {
                s.err("compression_level", format!("{n} must be between 0 (off) and 19"));
                None
            }
        };
        let location = match (&raw.path, &raw.url) {
            (Some(_), Some(_)) => {
                s.err("url", "and path are exclusive: a repository is a folder or a bucket");
                RepositoryLocation::Path(PathBuf::new())
            }
            (None, None) => {
                s.err("path", "is required (or url, for object storage)");
                RepositoryLocation::Path(PathBuf::new())
            }
            (Some(_), None) => {
                refuse_object_keys(&raw, &mut s);
                RepositoryLocation::Path(s.abs_path("path", raw.path, ""))
            }
            (None, Some(_)) => RepositoryLocation::Object(Box::new(object(raw, &mut s))),
        };
        RepositorySettings {
            location,
            upload_parallelism,
            key,
            compression,
        }
    }
}

/// `key_file` or `passphrase_file` (exclusive), absolute.
fn key_source(raw: &RawRepository, s: &mut Section) -> Option<KeySource> {
    match (&raw.key_file, &raw.passphrase_file) {
        (Some(_), Some(_)) => {
            s.err(
                "passphrase_file",
                "and key_file are exclusive: one opens the repository's key",
            );
            None
        }
        (Some(f), None) => Some(KeySource::File(s.abs_path("key_file", Some(f.clone()), ""))),
        (None, Some(f)) => Some(KeySource::Passphrase(s.abs_path(
            "passphrase_file",
            Some(f.clone()),
            "",
        ))),
        (None, None) => None,
    }
}

/// The object storage keys make no sense with a folder.
fn refuse_object_keys(raw: &RawRepository, s: &mut Section) {
    let set = [
        ("endpoint", raw.endpoint.is_some()),
        ("region", raw.region.is_some()),
        ("path_style", raw.path_style.is_some()),
        ("ca_file", raw.ca_file.is_some()),
        ("credentials_file", raw.credentials_file.is_some()),
        ("profile", raw.profile.is_some()),
        ("part_size_mib", raw.part_size_mib.is_some()),
    ];
    for (key, _) in set.iter().filter(|(_, on)| *on) {
        s.err(key, "is for object storage (url), not a folder (path)");
    }
}

/// `url` and the keys that go with it.
fn object(raw: RawRepository, s: &mut Section) -> ObjectSettings {
    let url = raw.url.unwrap_or_default();
    let (scheme, bucket, prefix) = parse_url(&url).unwrap_or_else(|e| {
        s.err("url", e);
        (ObjectScheme::S3, String::new(), String::new())
    });
    if let Some(e) = raw.endpoint.as_deref().and_then(|e| check_endpoint(e).err()) {
        s.err("endpoint", e);
    }
    if scheme != ObjectScheme::S3 {
        for (key, set) in [
            ("region", raw.region.is_some()),
            ("path_style", raw.path_style.is_some()),
        ] {
            if set {
                s.err(key, "is for s3:// repositories only");
            }
        }
    }
    let part_mib = s.count("part_size_mib", raw.part_size_mib, 16, 5).min(5 * 1024);
    ObjectSettings {
        url,
        scheme,
        bucket,
        prefix,
        endpoint: raw.endpoint,
        region: raw.region,
        path_style: raw.path_style.unwrap_or(false),
        ca_file: raw.ca_file.map(|f| s.abs_path("ca_file", Some(f), "")),
        credentials_file: raw
            .credentials_file
            .map(|f| s.abs_path("credentials_file", Some(f), "")),
        profile: raw.profile.unwrap_or_else(|| "default".into()),
        part_size: part_mib << 20,
        request_timeout: s.duration("request_timeout", raw.request_timeout, Duration::from_secs(120)),
        retries: s.count("retries", raw.retries, 10, 0),
        retry_timeout: s.duration("retry_timeout", raw.retry_timeout, Duration::from_secs(180)),
    }
}

/// `s3://bucket/prefix` into its parts; the error says what is wrong.
pub fn parse_url(url: &str) -> Result<(ObjectScheme, String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' must be s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"))?;
    let scheme = match scheme {
        "s3" => ObjectScheme::S3,
        "gs" => ObjectScheme::Gcs,
        "az" => ObjectScheme::Azure,
        other => return Err(format!("'{url}': '{other}://' is not s3://, gs:// or az://")),
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = !bucket.is_empty()
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    if !valid_bucket {
        return Err(format!("'{url}' has no valid bucket name ('{bucket}')"));
    }
    let prefix = prefix.trim_end_matches('/');
    if prefix.starts_with('/') || prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
        return Err(format!("'{url}' has no valid prefix ('{prefix}')"));
    }
    Ok((scheme, bucket.to_owned(), prefix.to_owned()))
}

/// `http(s)://host[:port]`.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .ok_or_else(|| format!("'{endpoint}' must start with https:// (or http://)"))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("'{endpoint}' has no valid host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{config_in, errors_with, MINIMAL};
    use super::super::Config;
    use super::*;

    fn with_repository(section: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL.replace(
            "[repository]\npath = \"/mnt/hwdr\"\n",
            &format!("[repository]\n{section}"),
        );
        config_in(dir.path(), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_path_or_url_is_required() {
        assert_eq!(
            with_repository("").unwrap_err(),
            "hwdr.toml: [repository] path: is required (or url, for object storage)"
        );
        assert_eq!(
            errors_with("[repository]\npath = \"mnt\"\n"),
            ["hwdr.d/50-test.toml: [repository] path: 'mnt' must be an absolute path"]
        );
        assert_eq!(
            errors_with("[repository]\nurl = \"s3://b/p\"\n"),
            ["hwdr.d/50-test.toml: [repository] url: and path are exclusive: a repository is a folder or a bucket"]
        );
        assert_eq!(
            errors_with("[repository]\nupload_parallelism = 65\n"),
            ["hwdr.d/50-test.toml: [repository] upload_parallelism: 65 must be between 1 and 64"]
        );
        assert_eq!(
            errors_with("[repository]\nregion = \"eu\"\n"),
            ["hwdr.d/50-test.toml: [repository] region: is for object storage (url), not a folder (path)"]
        );
    }

    #[test]
    fn an_s3_url_with_its_keys() {
        let c = with_repository(
            "url = \"s3://hwdr-backups/prod/\"\nendpoint = \"http://10.0.0.9:3900\"\nregion = \"garage\"\n\
             path_style = true\ncredentials_file = \"/etc/hwdr/s3.credentials\"\nupload_parallelism = 8\n",
        )
        .unwrap();
        assert_eq!(c.repository.upload_parallelism, 8);
        let RepositoryLocation::Object(o) = c.repository.location else {
            panic!("not object storage");
        };
        assert_eq!(
            (o.scheme, o.bucket.as_str(), o.prefix.as_str()),
            (ObjectScheme::S3, "hwdr-backups", "prod")
        );
        assert!(o.path_style);
        assert_eq!(o.part_size, 16 << 20);
        assert_eq!(o.profile, "default");
        assert_eq!(o.credentials_file.unwrap(), PathBuf::from("/etc/hwdr/s3.credentials"));
    }

    #[test]
    fn bad_urls_and_keys_are_named() {
        let err = with_repository(
            "url = \"ftp://b\"\nendpoint = \"s3.example.com\"\ncredentials_file = \"creds\"\npart_size_mib = 1\n",
        )
        .unwrap_err();
        assert_eq!(
            err.lines().collect::<Vec<_>>(),
            [
                "hwdr.toml: [repository] url: 'ftp://b': 'ftp://' is not s3://, gs:// or az://",
                "hwdr.toml: [repository] endpoint: 's3.example.com' must start with https:// (or http://)",
                "hwdr.toml: [repository] part_size_mib: 1 must be between 5 and 10000",
                "hwdr.toml: [repository] credentials_file: 'creds' must be an absolute path",
            ]
        );
        assert!(parse_url("s3://Bad_Bucket/x").is_err());
        assert!(parse_url("s3://b/../x").is_err());
        assert_eq!(parse_url("gs://b").unwrap(), (ObjectScheme::Gcs, "b".into(), "".into()));
        assert_eq!(
            with_repository("url = \"az://c/p\"\nregion = \"x\"\n").unwrap_err(),
            "hwdr.toml: [repository] region: is for s3:// repositories only"
        );
    }

    #[test]
    fn a_key_file_or_a_passphrase_file_and_the_compression_level() {
        let c = with_repository("path = \"/mnt/hwdr\"\nkey_file = \"/etc/hwdr/repo.key\"\n").unwrap();
        assert_eq!(c.repository.key, Some(KeySource::File("/etc/hwdr/repo.key".into())));
        assert_eq!(c.repository.compression, Some(3));
        let c = with_repository("path = \"/mnt/hwdr\"\npassphrase_file = \"/etc/p\"\ncompression_level = 0\n").unwrap();
        assert_eq!(c.repository.key, Some(KeySource::Passphrase("/etc/p".into())));
        assert_eq!(c.repository.compression, None);
        assert_eq!(
            errors_with("[repository]\nkey_file = \"/k\"\npassphrase_file = \"/p\"\n"),
            ["hwdr.d/50-test.toml: [repository] passphrase_file: and key_file are exclusive: one opens the repository's key"]
        );
        assert_eq!(
            errors_with("[repository]\nkey_file = \"k\"\ncompression_level = 20\n"),
            [
                "hwdr.d/50-test.toml: [repository] key_file: 'k' must be an absolute path",
                "hwdr.d/50-test.toml: [repository] compression_level: 20 must be between 0 (off) and 19"
            ]
        );
    }
}
