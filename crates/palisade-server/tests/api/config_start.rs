//! Start-up refusals: production with a default, short, generated or missing secret never binds, and
//! `palisade config check` reports the same verdicts with a non-zero exit, naming the setting and never
//! the value.

use std::process::Command;

use palisade_server::config::{Mode, Settings};
use secrecy::SecretString;

fn production(dir: &std::path::Path) -> Settings {
    let mut s = Settings::for_test(dir);
    s.mode = Mode::Production;
    s.trust.contact = Some("mailto:security@example.com".into());
    s.auth.otp.sender = "none".into();
    s.database.url = Some(format!("sqlite://{}", dir.join("p.db").display()).into());
    s
}

#[tokio::test]
async fn production_start_with_a_default_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "changeme",
        "too-short",
        "REPLACE-ME-WITH-32-OR-MORE-RANDOM-BYTES",
    ] {
        let mut s = production(dir.path());
        s.secrets.master_key = Some(SecretString::from(bad.to_owned()));
        let err = palisade_server::build(s)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("secrets.master_key"), "{err}");
        assert!(!err.contains(bad), "the refusal echoes the secret: {err}");
    }
    let mut s = production(dir.path());
    s.secrets.master_key = None;
    assert!(palisade_server::build(s).await.is_err());
    // Nothing was created: the refusal happens before the database is opened.
    assert!(!dir.path().join("p.db").exists());
}

#[tokio::test]
async fn production_refuses_a_key_generated_for_development() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = production(dir.path());
    s.secrets.master_key = Some(palisade_crypto::MasterKey::generate_development());
    let err = palisade_server::build(s)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("generated for development"), "{err}");
}

#[tokio::test]
async fn production_with_strong_settings_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = production(dir.path());
    s.secrets.master_key = Some(SecretString::from(
        "k9V2xq7LrT4mWb8ZpN3sYd6HfJ1cUe5G-prod".to_owned(),
    ));
    assert!(palisade_server::build(s).await.is_ok());
}

#[test]
fn config_check_exits_non_zero_and_names_the_setting_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("PALISADE__MODE", "production")
        .env("PALISADE__SECRETS__MASTER_KEY", "changeme")
        .env_remove("PALISADE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("secrets.master_key"), "{text}");
    assert!(text.contains("trust.contact"), "{text}");
    assert!(!text.contains("changeme"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check"])
        .current_dir(dir.path())
        .env_remove("PALISADE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_refuses_to_bind_in_production_with_a_default_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("PALISADE__MODE", "production")
        .env("PALISADE__SECRETS__MASTER_KEY", "changeme")
        .env("PALISADE__TRUST__CONTACT", "mailto:security@example.com")
        .env_remove("PALISADE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("refusing to start") && text.contains("secrets.master_key"),
        "{text}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing was written before the refusal"
    );
}

#[test]
fn the_shipped_example_configuration_passes_config_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["config", "check", "--config"])
        .arg(root.join("palisade.toml"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads the child's stderr until the banner names the address it listens on.
fn wait_for_banner(child: &mut std::process::Child) -> (String, String) {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let mut addr = None;
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(rest.trim().to_owned());
        }
        // The banner's last line.
        if let (Some(addr), true) = (&addr, line.contains("palisade config check")) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (addr.clone(), seen);
        }
    }
    panic!("the server exited before listening:\n{seen}");
}

#[tokio::test]
async fn the_release_binary_starts_with_no_configuration_and_refuses_test_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("PALISADE_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, banner) = wait_for_banner(&mut child);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    let tenants = client
        .get(format!("http://{addr}/v1/tenants"))
        .header("authorization", "Test anything")
        .send()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(health.status(), 200);
    // SECURITY: the test kit's credential scheme does not exist in the binary.
    assert_eq!(tenants.status(), 401);
    assert!(banner.contains("mode:      development"), "{banner}");
    assert!(banner.contains("owner@localhost"), "{banner}");
    let key = dir.path().join("data/master.key");
    assert!(key.exists() && dir.path().join("data/palisade.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("data"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }
    assert!(
        !banner.contains(std::fs::read_to_string(&key).unwrap().trim()),
        "the banner shows the key"
    );
}
