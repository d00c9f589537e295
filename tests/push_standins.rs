//! The push providers' stand-ins (FCM and APNs, from `loadtest`) on free ports, with
//! throw-away credentials, for the tests that run Postino against them.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::process::Command;

/// Push stand-ins on free ports, with throw-away credentials whose FCM service account
/// names the FCM stand-in's token endpoint.
pub struct Standins {
    pub dir: tempfile::TempDir,
    pub fcm: String,
    pub apns: String,
}

pub const APNS_KEY_ID: &str = "KEY1234567";
pub const APNS_TEAM_ID: &str = "TEAM123456";
pub const APNS_TOPIC: &str = "it.pagopa.app.io";

pub async fn standins() -> Standins {
    use loadtest::standins::{apns::FakeApns, faults, fcm::FakeFcm};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = testkit::repo_file("scripts/stand-in-keys.sh");
    let status = Command::new(script)
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run scripts/stand-in-keys.sh");
    assert!(status.success());
    let read = |name: &str| std::fs::read(dir.path().join(name)).expect(name);
    let no_faults = || faults::FaultArgs::default();
    let fcm = FakeFcm::new(
        &read("fcm-public.pem"),
        std::time::Duration::from_secs(3600),
        faults::Faults::new(no_faults(), faults::FCM),
    )
    .expect("fake fcm");
    let apns = FakeApns::new(
        &read("apns-public.pem"),
        APNS_KEY_ID.into(),
        APNS_TEAM_ID.into(),
        APNS_TOPIC.into(),
        faults::Faults::new(no_faults(), faults::APNS),
    )
    .expect("fake apns");
    let any_port = "127.0.0.1:0".parse().expect("addr");
    let (fcm_addr, _) = loadtest::standins::spawn(Arc::new(fcm).router(), any_port)
        .await
        .expect("listen");
    let (apns_addr, _) = loadtest::standins::spawn(Arc::new(apns).router(), any_port)
        .await
        .expect("listen");
    let fcm = format!("http://{fcm_addr}");
    let account_path = dir.path().join("fcm-service-account.json");
    let mut account: serde_json::Value =
        serde_json::from_slice(&read("fcm-service-account.json")).expect("account json");
    account["token_uri"] = serde_json::json!(format!("{fcm}/token"));
    std::fs::write(&account_path, account.to_string()).expect("write account");
    Standins {
        dir,
        fcm,
        apns: format!("http://{apns_addr}"),
    }
}

impl Standins {
    /// Points `config`'s push settings at the stand-ins.
    pub fn configure(&self, config: &mut postino::config::Config) {
        config.push.fcm.service_account = Some(self.dir.path().join("fcm-service-account.json"));
        config.push.fcm.base_url = self.fcm.clone();
        config.push.apns.key_file = Some(self.dir.path().join("apns-key.p8"));
        config.push.apns.key_id = Some(APNS_KEY_ID.into());
        config.push.apns.team_id = Some(APNS_TEAM_ID.into());
        config.push.apns.topic = Some(APNS_TOPIC.into());
        config.push.apns.base_url = self.apns.clone();
        // These tests push at whatever hour they run.
        config.push.quiet_hours = "off".into();
    }
}
