//! The documented example configuration parses, and bad files fail clearly.

use std::path::Path;

use node::NodeConfig;

#[test]
fn example_config_parses_with_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gatemesh.example.toml");
    let config = NodeConfig::load(&path).expect("deploy/gatemesh.example.toml must parse");
    assert_eq!(config.node.region.as_str(), "fra");
    assert_eq!(config.discovery.orchestrators.len(), 2);
    assert_eq!(
        config.discovery.orchestrators[1].as_str(),
        "https://orch-2.example.net:8935"
    );
    assert_eq!(config.keys.len(), 1);
    assert_eq!(config.api.pipelines.len(), 9);
}

#[test]
fn unknown_keys_and_bad_values_are_rejected() {
    let base = "[node]\nname = \"a\"\nregion = \"r\"\n";
    assert!(NodeConfig::parse(base).is_ok());
    let typo = format!("{base}[discovery]\norchestrator = [\"x\"]\n");
    let error = NodeConfig::parse(&typo).unwrap_err().to_string();
    assert!(error.contains("orchestrator"), "{error}");
    let bad_region = "[node]\nname = \"a\"\nregion = \"r r\"\n";
    assert!(NodeConfig::parse(bad_region).is_err());
    let half_tls = format!("{base}[http]\ntls_cert_path = \"/x\"\n");
    assert!(
        NodeConfig::parse(&half_tls)
            .unwrap_err()
            .to_string()
            .contains("together")
    );
    let short_key = format!("{base}[[keys]]\nkey = \"short\"\ntenant = \"t\"\n");
    assert!(NodeConfig::parse(&short_key).is_err());
    let bad_orchestrator = format!("{base}[discovery]\norchestrators = [\"ftp://x\"]\n");
    assert!(NodeConfig::parse(&bad_orchestrator).is_err());
}

#[test]
fn the_routing_digest_changes_with_routing_settings_only() {
    let digest = |text: &str| NodeConfig::parse(text).expect("valid").routing_digest();
    let fra = "[node]\nname = \"fra-1\"\nregion = \"fra\"\n";
    let lax = "[node]\nname = \"lax-1\"\nregion = \"lax\"\n[jobs]\nmax_attempts = 2\n";
    let pools = "[[offer]]\npipeline = \"llm\"\ntier_pools = { premium = \"gold\" }\n\
                 [pools]\ngold = [\"https://orch-1.example.net:8935\"]\n";
    let base = digest(fra);
    assert_eq!(base.len(), 16);
    assert!(base.bytes().all(|b| b.is_ascii_hexdigit()), "{base}");
    // Identity and settings a forwarded job does not depend on: same digest.
    assert_eq!(digest(lax), base);
    // A default written out is the default.
    assert_eq!(
        digest(&format!("{fra}[pricing]\npixels_per_unit = 1\n")),
        base
    );
    // What decides where and how a job runs: another digest.
    let with_pools = digest(&format!("{fra}{pools}"));
    assert_ne!(with_pools, base);
    assert_eq!(digest(&format!("{lax}{pools}")), with_pools);
    let other_pool = pools.replace("orch-1", "orch-2");
    assert_ne!(digest(&format!("{fra}{other_pool}")), with_pools);
    for section in [
        "[pricing]\nmax_price_per_unit = \"1000\"\n",
        "[[tenants]]\nname = \"acme\"\nrequests_per_minute = 60\n",
        "[[rate_cards]]\npipeline = \"llm\"\nunit = \"run\"\nprice_usd = \"0.01\"\n",
    ] {
        assert_ne!(digest(&format!("{fra}{section}")), base, "{section}");
    }
}
