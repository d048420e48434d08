//! The Garage fixture against the real server, through a real S3 client.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::setup::find_binary;
use super::Garage;

/// A current-thread runtime, as a test's own.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A client that gives up at the first error, within `timeout`.
pub(crate) fn impatient(builder: object_store::aws::AmazonS3Builder, timeout: Duration) -> AmazonS3 {
    let retry = RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    };
    let options = Garage::client_options()
        .with_timeout(timeout)
        .with_connect_timeout(timeout);
    builder.with_retry(retry).with_client_options(options).build().unwrap()
}

fn key(name: &str) -> ObjectPath {
    ObjectPath::from(name)
}

#[test]
fn put_get_list_delete() {
    let garage = Garage::start().unwrap();
    assert!(garage.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(garage.region(), "garage");
    assert!(garage.access_key().starts_with("GK") && garage.access_key().len() == 26);
    assert_eq!(garage.secret_key().len(), 64);
    let store = garage.s3_builder().build().unwrap();
    let rt = runtime();
    rt.block_on(async {
        store.put(&key("a/one"), PutPayload::from_static(b"one")).await.unwrap();
        store
            .put(&key("a/two"), PutPayload::from_static(b"two!"))
            .await
            .unwrap();
        let got = store.get(&key("a/one")).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"one");
        let listed = store.list_with_delimiter(Some(&key("a"))).await.unwrap();
        let mut names: Vec<String> = listed.objects.iter().map(|o| o.location.to_string()).collect();
        names.sort();
        assert_eq!(names, ["a/one", "a/two"]);
        assert_eq!(store.head(&key("a/two")).await.unwrap().size, 4);
        store.delete(&key("a/one")).await.unwrap();
        assert!(matches!(
            store.get(&key("a/one")).await,
            Err(object_store::Error::NotFound { .. })
        ));
    });
}

#[test]
fn restart_keeps_the_data_and_a_stopped_server_fails_requests() {
    let mut garage = Garage::start().unwrap();
    let endpoint = garage.endpoint();
    {
        let rt = runtime();
        let store = impatient(garage.s3_builder(), Duration::from_secs(2));
        rt.block_on(store.put(&key("kept"), PutPayload::from_static(b"kept")))
            .unwrap();
    }

    // The client's connections closed with its runtime: Garage stops at once.
    let stopping = Instant::now();
    garage.stop().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(5), "{:?}", stopping.elapsed());
    assert!(!garage.is_running());
    let rt = runtime();
    let fresh = impatient(garage.s3_builder(), Duration::from_secs(2));
    assert!(rt.block_on(fresh.get(&key("kept"))).is_err());

    garage.restart().unwrap();
    assert!(garage.is_running());
    assert_eq!(garage.endpoint(), endpoint);
    let store = impatient(garage.s3_builder(), Duration::from_secs(2));
    let got = rt
        .block_on(async { store.get(&key("kept")).await?.bytes().await })
        .unwrap();
    assert_eq!(&got[..], b"kept");
    assert!(std::fs::read_to_string(garage.log_path()).unwrap().contains("garage"));
}

#[test]
fn servers_started_at_once_each_have_their_own_ports_and_bucket() {
    let garages: Vec<Garage> = std::thread::scope(|s| {
        let started: Vec<_> = (0..4).map(|_| s.spawn(|| Garage::start().unwrap())).collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut endpoints: Vec<String> = garages.iter().map(Garage::endpoint).collect();
    endpoints.sort();
    endpoints.dedup();
    assert_eq!(endpoints.len(), 4);
    let rt = runtime();
    for garage in &garages {
        let store = garage.s3_builder().build().unwrap();
        rt.block_on(store.put(&key("mine"), PutPayload::from(garage.bucket().to_string())))
            .unwrap();
    }
    for garage in &garages {
        let store = garage.s3_builder().build().unwrap();
        let got = rt
            .block_on(async { store.get(&key("mine")).await?.bytes().await })
            .unwrap();
        assert_eq!(&got[..], garage.bucket().as_bytes());
    }
}

#[test]
fn drop_kills_the_server_and_removes_its_folder_also_on_panic() {
    let seen = std::sync::Mutex::new(None);
    let panicked = std::panic::catch_unwind(|| {
        let garage = Garage::start().unwrap();
        *seen.lock().unwrap() = Some((garage.dir().to_path_buf(), garage.endpoint()));
        panic!("a failing test");
    });
    assert!(panicked.is_err());
    let (dir, endpoint) = seen.lock().unwrap().take().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
    let addr = endpoint.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(addr).is_err(), "{addr} still answers");
}

#[test]
fn credentials_file_is_private() {
    let garage = Garage::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    garage.write_credentials(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            garage.access_key(),
            garage.secret_key()
        )
    );
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let env = garage.aws_env();
    assert_eq!(env[0], ("AWS_ACCESS_KEY_ID", garage.access_key().to_string()));
}

#[test]
fn binary_lookup_order_and_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let make = |rel: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let on_path = make("bin/garage");
    let cargo = make("home/.cargo/bin/garage");
    let explicit = make("elsewhere/garage-2.5");
    let path = Some(OsString::from(format!(
        "/nonexistent:{}",
        dir.path().join("bin").display()
    )));
    let cargo_bins = vec![PathBuf::from("/nonexistent"), dir.path().join("home/.cargo/bin")];

    let found = find_binary(Some(explicit.clone().into()), path.clone(), cargo_bins.clone()).unwrap();
    assert_eq!(found, explicit);
    assert_eq!(find_binary(None, path, cargo_bins.clone()).unwrap(), on_path);
    assert_eq!(
        find_binary(None, Some("/nonexistent".into()), cargo_bins).unwrap(),
        cargo
    );

    let missing = find_binary(None, Some("/nonexistent".into()), vec![PathBuf::from("/nonexistent")]);
    assert_eq!(
        missing.unwrap_err().to_string(),
        "garage is not installed: run `make deps`"
    );
    let wrong = find_binary(Some("/nonexistent/garage".into()), None, vec![]).unwrap_err();
    assert!(wrong.to_string().contains("HWDR_GARAGE=/nonexistent/garage"), "{wrong}");
}

#[test]
fn a_multipart_upload_cut_by_a_kill_fails_and_starts_again_after_restart() {
    let mut garage = Garage::start().unwrap();
    let store = impatient(garage.s3_builder(), Duration::from_secs(2));
    let part = vec![7u8; 5 << 20];
    let rt = runtime();
    let mut upload = rt.block_on(store.put_multipart(&key("cut"))).unwrap();
    rt.block_on(upload.put_part(PutPayload::from(part.clone()))).unwrap();

    garage.kill().unwrap();
    assert!(rt.block_on(upload.put_part(PutPayload::from(part.clone()))).is_err());
    assert!(rt.block_on(store.head(&key("cut"))).is_err());

    garage.restart().unwrap();
    assert!(
        matches!(
            rt.block_on(store.head(&key("cut"))),
            Err(object_store::Error::NotFound { .. })
        ),
        "an unfinished upload is listed"
    );
    // object_store numbers parts as they are started: one that failed
    // leaves a gap, and the upload cannot complete; it is aborted and
    // started again.
    assert!(rt.block_on(upload.complete()).is_err());
    rt.block_on(upload.abort()).unwrap();
    let mut again = rt.block_on(store.put_multipart(&key("cut"))).unwrap();
    for _ in 0..2 {
        rt.block_on(again.put_part(PutPayload::from(part.clone()))).unwrap();
    }
    rt.block_on(again.complete()).unwrap();
    assert_eq!(rt.block_on(store.head(&key("cut"))).unwrap().size, 10 << 20);
}
