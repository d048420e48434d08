//! `[repository] url` into an `object_store` client: the cloud's builder
//! from the environment (keys, web identity, instance metadata), the
//! credentials file over it when one is named, the endpoint, the private CA,
//! timeouts and retries.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, Certificate, ClientOptions, ObjectStore, RetryConfig};

use crate::config::{ObjectScheme, ObjectSettings};

/// The client for `settings`, rooted at its prefix; the error names what
/// was wrong (a credentials file, the CA file, a key the cloud refused).
pub(super) fn store(settings: &ObjectSettings) -> Result<Arc<dyn ObjectStore>, String> {
    let options = client_options(settings)?;
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: settings.retries,
        retry_timeout: settings.retry_timeout,
    };
    let built: Arc<dyn ObjectStore> = match settings.scheme {
        ObjectScheme::S3 => Arc::new(s3(settings, options, retry)?.build().map_err(|e| e.to_string())?),
        ObjectScheme::Gcs => Arc::new(gcs(settings, options, retry)?.build().map_err(|e| e.to_string())?),
        ObjectScheme::Azure => Arc::new(azure(settings, options, retry)?.build().map_err(|e| e.to_string())?),
    };
    if settings.prefix.is_empty() {
        return Ok(built);
    }
    Ok(Arc::new(PrefixStore::new(built, settings.prefix.as_str())))
}

/// Timeouts, plain HTTP for an `http://` endpoint, the private CA.
fn client_options(settings: &ObjectSettings) -> Result<ClientOptions, String> {
    let mut options = ClientOptions::new()
        .with_timeout(settings.request_timeout)
        .with_connect_timeout(std::time::Duration::from_secs(10))
        .with_allow_http(settings.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
    if let Some(ca) = &settings.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("reading ca_file {}: {e}", ca.display()))?;
        let certificates = Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {} holds no usable PEM certificate: {e}", ca.display()))?;
        for certificate in certificates {
            options = options.with_root_certificate(certificate);
        }
    }
    Ok(options)
}

fn s3(settings: &ObjectSettings, options: ClientOptions, retry: RetryConfig) -> Result<AmazonS3Builder, String> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_virtual_hosted_style_request(!settings.path_style)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &settings.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(file) = &settings.credentials_file {
        let keys = profile(file, &settings.profile)?;
        let id = required(&keys, file, "aws_access_key_id")?;
        let secret = required(&keys, file, "aws_secret_access_key")?;
        builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(token) = keys.get("aws_session_token") {
            builder = builder.with_token(token);
        }
    }
    Ok(builder)
}

fn gcs(
    settings: &ObjectSettings,
    options: ClientOptions,
    retry: RetryConfig,
) -> Result<GoogleCloudStorageBuilder, String> {
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(file) = &settings.credentials_file {
        check_private(file)?;
        builder = builder.with_service_account_path(file.to_string_lossy());
    }
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_base_url(endpoint);
    }
    Ok(builder)
}

fn azure(
    settings: &ObjectSettings,
    options: ClientOptions,
    retry: RetryConfig,
) -> Result<MicrosoftAzureBuilder, String> {
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(&settings.bucket)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(file) = &settings.credentials_file {
        let keys = profile(file, &settings.profile)?;
        builder = builder
            .with_account(required(&keys, file, "account_name")?)
            .with_access_key(required(&keys, file, "account_key")?);
    }
    if let Some(endpoint) = &settings.endpoint {
        builder = builder
            .with_endpoint(endpoint.clone())
            .with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(builder)
}

fn required<'a>(keys: &'a HashMap<String, String>, file: &Path, key: &str) -> Result<&'a str, String> {
    keys.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("credentials file {} has no {key}", file.display()))
}

/// The keys of section `[profile]` of an INI credentials file (the AWS
/// shared-credentials format: `key = value` lines, `#` and `;` comments);
/// keys before any section count as `[default]`.
fn profile(file: &Path, profile: &str) -> Result<HashMap<String, String>, String> {
    check_private(file)?;
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("reading credentials file {}: {e}", file.display()))?;
    let mut section = "default".to_owned();
    let mut found = false;
    let mut keys = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().trim_start_matches("profile ").trim().to_owned();
            found |= section == profile;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "credentials file {} line {}: expected key = value",
                file.display(),
                n + 1
            ));
        };
        if section == profile {
            found = true;
            keys.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    if !found {
        return Err(format!(
            "credentials file {} has no profile [{profile}]",
            file.display()
        ));
    }
    Ok(keys)
}

/// A file holding secrets must be this user's (or root's) and readable by
/// its owner only.
fn check_private(file: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("credentials file {}: {e}", file.display()))?;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "credentials file {} belongs to uid {}: it must be root's",
            file.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "credentials file {} is readable by others (mode {:o}): chmod 600 it",
            file.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(text: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn a_profile_is_read_from_a_private_file_only() {
        let text = "# keys\n[default]\naws_access_key_id = AK\naws_secret_access_key = S = x\n\n[profile other]\naws_access_key_id = B\n";
        let (_d, path) = file(text, 0o600);
        let keys = profile(&path, "default").unwrap();
        assert_eq!(keys["aws_access_key_id"], "AK");
        assert_eq!(keys["aws_secret_access_key"], "S = x");
        assert_eq!(profile(&path, "other").unwrap()["aws_access_key_id"], "B");
        let err = profile(&path, "third").unwrap_err();
        assert!(err.ends_with("has no profile [third]"), "{err}");
        let (_d, open) = file(text, 0o644);
        let err = profile(&open, "default").unwrap_err();
        assert!(err.ends_with("is readable by others (mode 644): chmod 600 it"), "{err}");
        let (_d, bad) = file("[default]\nno equals sign\n", 0o600);
        assert!(profile(&bad, "default")
            .unwrap_err()
            .ends_with("line 2: expected key = value"));
    }
}
