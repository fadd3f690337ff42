//! The device's own health, read from a fake sysfs and procfs tree: the
//! figures reach `/healthz`, and while the CPU is over its limit the agent
//! takes no offer; once it cools, it takes the next.

use std::time::Duration;

use serde_json::json;

use super::common::{BOGOTA, TestApp};
use super::mavlink::{free_port, healthz};
use super::{agent_config, enrollment_token, hovering_at, server_url, spawn_agent, wait_until};

const THERMAL: &str = "sys/class/thermal/thermal_zone0/temp";

fn write(root: &std::path::Path, relative: &str, text: &str) {
    let at = root.join(relative);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::write(at, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_device_reports_its_figures_and_takes_no_offer_until_it_cools() {
    let sys = tempfile::tempdir().unwrap();
    write(sys.path(), THERMAL, "85000\n");
    write(
        sys.path(),
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        "0x20002\n",
    );
    write(
        sys.path(),
        "proc/meminfo",
        "MemTotal:        1024000 kB\nMemAvailable:     512000 kB\n",
    );
    write(sys.path(), "proc/uptime", "3600.25 7000.00\n");

    let t = TestApp::spawn_realtime().await;
    let consumer = t.consumer("health-consumer").await;
    // Offers, not assignments: the device decides.
    let supplier = t.supplier("health-fleet", BOGOTA, false).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = agent_config(
        &server_url(&t),
        &state.path().join("state"),
        &hovering_at(BOGOTA),
    );
    let health_port = free_port(false);
    config.health.listen = format!("127.0.0.1:{health_port}");
    config.health.sys_root = sys.path().to_path_buf();
    config.health.read_interval_ms = 200;
    config.lifecycle.max_temperature_c = 80.0;
    let token = enrollment_token(&t, &supplier).await;
    lx_agent::run::enroll(&config, &token).await.unwrap();
    let (stop, agent) = spawn_agent(config);

    wait_until("the device's figures on /healthz", 15, || async {
        healthz(health_port).await["device"]["cpuTemperatureC"] == 85.0
    })
    .await;
    let seen = healthz(health_port).await;
    let device = &seen["device"];
    assert_eq!(device["throttled"], true, "{device}");
    assert_eq!(device["memoryTotalMb"], 1000);
    assert_eq!(device["memoryAvailableMb"], 500);
    assert_eq!(device["uptimeSeconds"], 3600);
    assert!(device["diskFreeMb"].as_u64().is_some(), "{device}");

    // Hot: the offer stands unanswered.
    let hot = t.request(&consumer, BOGOTA, 120).await;
    t.post(
        format!("/sessions/{hot}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = t.session(&consumer, &hot).await;
    assert_eq!(s["state"], "REQUESTED", "a hot device took the offer: {s}");
    t.call(
        reqwest::Method::DELETE,
        format!("/sessions/{hot}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();

    // Cooled down: the next offer is taken.
    write(sys.path(), THERMAL, "61000\n");
    let cool = t.request(&consumer, BOGOTA, 120).await;
    t.post(
        format!("/sessions/{cool}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    wait_until("the cooled device to take the offer", 15, || async {
        t.session(&consumer, &cool).await["state"] != "REQUESTED"
    })
    .await;
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
}
