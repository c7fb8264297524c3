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
