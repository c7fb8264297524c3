//! Cluster membership end to end: a lab of 3 regions × 2 in-process nodes
//! (generated certificates, port 0 everywhere, distinct 127.0.0.x
//! addresses) converges to one member list, and a node holding a
//! certificate from another CA can neither join, nor read, nor write state.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::ensure;
use mesh::MemberState;
use tests::lab::{LAB_POLL, Lab, LabSpec, REGIONS, ViewDigest};
use tokio::time::Instant;

/// Acceptance bound: every node lists all 6 alive with regions within 5 s.
const CONVERGE_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_in_three_regions_list_each_other_alive_within_5_s() -> anyhow::Result<()> {
    let started = Instant::now();
    let lab = Lab::start(LabSpec::new(&REGIONS, 2, 0)).await?;
    let all_started = started.elapsed();
    let everyone: Vec<usize> = (0..lab.members().len()).collect();
    let outcome = lab.wait_all_alive(&everyone, CONVERGE_WITHIN * 2).await;
    let converged = started.elapsed();
    eprintln!(
        "membership: 6 nodes started in {all_started:?}; every node listed all 6 alive with regions {converged:?} after the first start ({:?} after the last)",
        converged.saturating_sub(all_started)
    );
    outcome?;
    ensure!(
        converged <= CONVERGE_WITHIN,
        "converged after {converged:?}, more than {CONVERGE_WITHIN:?}"
    );
    // Exactly one entry per node, on every node.
    for i in lab.running() {
        let members = lab.node(i).cluster().members();
        ensure!(members.len() == 6, "{}: {members:?}", lab.members()[i].name);
        ensure!(
            members.iter().filter(|m| m.is_self).count() == 1,
            "{}: self not listed once",
            lab.members()[i].name
        );
    }
    lab.shutdown().await;
    Ok(())
}

/// How long the intruder is watched after it started writing records.
const INTRUDER_WATCH: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_foreign_ca_cannot_join_read_or_write() -> anyhow::Result<()> {
    let lab = Lab::start(LabSpec::new(&REGIONS, 2, 1)).await?;
    let everyone: Vec<usize> = (0..lab.members().len()).collect();
    lab.wait_all_alive(&everyone, CONVERGE_WITHIN).await?;
    lab.wait_ready().await?;

    // Same seeds, same discovery as fra's nodes, a plausible name.
    let (_foreign_ca, intruder) = lab
        .start_foreign("fra-9", "fra", Ipv4Addr::new(127, 0, 0, 19))
        .await?;
    let intruder_generation = intruder
        .cluster()
        .mesh()
        .map(mesh::MeshHandle::generation)
        .ok_or_else(|| anyhow::anyhow!("the intruder runs without a mesh"))?;

    // It writes: its discovery records observations of fra's orchestrator.
    let writing = tests::lab::poll_until(
        "the intruder to record observations",
        Duration::from_secs(10),
        || {
            ViewDigest::of(&intruder)
                .versions
                .values()
                .any(|observers| observers.contains_key("fra-9"))
        },
    )
    .await?;
    eprintln!("intruder: recording observations {writing:?} after start");

    // Watch continuously: at no moment may anything leak either way.
    let until = Instant::now() + INTRUDER_WATCH;
    let mut checks = 0u32;
    while Instant::now() < until {
        for i in lab.running() {
            let node = lab.node(i);
            let name = &lab.members()[i].name;
            let members = node.cluster().members();
            ensure!(
                members
                    .iter()
                    .all(|m| m.node.as_str() != "fra-9" && m.generation != intruder_generation),
                "{name} lists the intruder: {members:?}"
            );
            let digest = ViewDigest::of(node);
            ensure!(
                digest.versions.values().all(|o| !o.contains_key("fra-9")),
                "{name}'s view holds the intruder's observations"
            );
            let mesh = lab.mesh(i);
            ensure!(
                mesh.records().iter().all(|r| r.origin.as_str() != "fra-9"),
                "{name} accepted a record from the intruder"
            );
        }
        let seen = intruder.cluster().members();
        ensure!(
            seen.iter().all(|m| m.is_self),
            "the intruder sees other nodes: {seen:?}"
        );
        ensure!(
            seen.iter().all(|m| m.state == MemberState::Alive),
            "the intruder's own entry: {seen:?}"
        );
        let theirs = ViewDigest::of(&intruder);
        ensure!(
            theirs
                .versions
                .values()
                .all(|o| o.keys().all(|observer| observer == "fra-9")),
            "the intruder read other nodes' observations: {theirs:?}"
        );
        checks += 1;
        tokio::time::sleep(LAB_POLL * 10).await;
    }
    eprintln!("intruder: {checks} checks over {INTRUDER_WATCH:?}, nothing crossed");
    // The lab itself is unharmed.
    ensure!(lab.all_alive(&everyone), "{}", lab.membership_report());
    intruder.shutdown().await?;
    lab.shutdown().await;
    Ok(())
}

/// How long a changed routing configuration may take to show on the peers:
/// one chitchat key change (gossip every 100 ms) plus the 1 s comparison.
const MISMATCH_SEEN_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_routing_configuration_differs_say_so() -> anyhow::Result<()> {
    // Same files but for a pool only lax has: a job forwarded from fra to
    // lax would run under other rules.
    let spec = LabSpec::new(&REGIONS[..2], 1, 0).line(
        Some("lax"),
        "tables",
        "[pools]\ngold = [\"https://orch-1.example.net:8935\"]",
    );
    let lab = Lab::start(spec).await?;
    lab.wait_all_alive(&[0, 1], CONVERGE_WITHIN * 2).await?;
    let digests: Vec<String> = (0..2)
        .map(|i| lab.node(i).cluster().routing_config())
        .collect();
    ensure!(
        digests[0].len() == 16 && digests[0] != digests[1],
        "{digests:?}"
    );
    let gauge = "\ngatemesh_mesh_config_mismatched_peers 1\n";
    tests::lab::poll_until(
        "both nodes count the other as mismatched",
        MISMATCH_SEEN_WITHIN,
        || (0..2).all(|i| lab.node(i).cluster().metrics().encode().contains(gauge)),
    )
    .await?;
    // The admin API shows each member's digest.
    let report: serde_json::Value = lab
        .client()
        .get(format!("{}/admin/cluster", lab.node(0).admin_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let listed: Vec<(String, String)> = report["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| {
                    (
                        m["node"].as_str().unwrap_or_default().to_owned(),
                        m["routing_config"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected: Vec<(String, String)> = lab
        .members()
        .iter()
        .zip(&digests)
        .map(|(m, d)| (m.name.to_string(), d.clone()))
        .collect();
    let (mut listed, mut expected) = (listed, expected);
    listed.sort();
    expected.sort();
    ensure!(listed == expected, "{report}");
    lab.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_routing_configuration_gets_a_new_digest() -> anyhow::Result<()> {
    tests::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("node.toml");
    let base = "[node]\nname = \"solo\"\nregion = \"fra\"\n[http]\nlisten_addr = \"127.0.0.1:0\"\n\
                [admin]\nlisten_addr = \"127.0.0.1:0\"\n";
    std::fs::write(&path, base)?;
    let node = node::Node::start(node::NodeConfig::load(&path)?).await?;
    let before = node.cluster().routing_config();
    ensure!(before == node.config().routing_digest(), "{before}");
    let changed = format!("{base}[pools]\ngold = [\"https://orch-1.example.net:8935\"]\n");
    let expected = node::NodeConfig::parse(&changed)?.routing_digest();
    ensure!(expected != before);
    std::fs::write(&path, &changed)?;
    let cluster = node.cluster().clone();
    tests::lab::poll_until(
        "the reloaded configuration's digest",
        Duration::from_secs(5),
        || cluster.routing_config() == expected,
    )
    .await?;
    node.shutdown().await?;
    Ok(())
}
