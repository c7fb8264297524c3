//! `[[tenants]]` and `[admin]` rules: limits parse into integer units, bad
//! values fail at load, and an admin listener off loopback needs a token.

use node::NodeConfig;

const BASE: &str = "[node]\nname = \"a\"\nregion = \"r\"\n";

#[test]
fn tenant_limits_parse_into_integer_units() {
    let text = format!(
        "{BASE}[[tenants]]\nname = \"acme\"\nrequests_per_minute = 60\nmax_concurrent_jobs = 4\n\
         spend_per_day_usd = \"50\"\nspend_per_month_usd = \"1000.25\"\n\
         [[tenants]]\nname = \"globex\"\nrequests_per_minute = 10\nrate_pool_percent = 0\n"
    );
    let config = NodeConfig::parse(&text).expect("valid");
    let limits = config.tenant_limits().expect("limits");
    let acme = limits["acme"];
    assert_eq!(acme.requests_per_minute, Some(60));
    assert_eq!(acme.max_concurrent_jobs, Some(4));
    assert_eq!(acme.spend_per_day_nano_usd, Some(50_000_000_000));
    assert_eq!(acme.spend_per_month_nano_usd, Some(1_000_250_000_000));
    assert_eq!(acme.rate_pool_percent, 20, "the default pool share");
    assert_eq!(limits["globex"].rate_pool_percent, 0);
    assert_eq!(limits["globex"].spend_per_day_nano_usd, None);
}

#[test]
fn bad_tenant_entries_are_rejected() {
    for (bad, needle) in [
        (
            "name = \"acme\"\nspend_per_day_usd = \"1.5e3\"",
            "spend_per_day_usd",
        ),
        (
            "name = \"acme\"\nspend_per_month_usd = \"0.0000000001\"",
            "9 decimals",
        ),
        ("name = \"acme\"\nrate_pool_percent = 101", "0–100"),
        ("name = \"a b\"", "tenants.name"),
        (
            "name = \"acme\"\nrequests_per_minut = 1",
            "requests_per_minut",
        ),
        ("name = \"acme\"\n[[tenants]]\nname = \"acme\"", "twice"),
    ] {
        let text = format!("{BASE}[[tenants]]\n{bad}\n");
        let error = NodeConfig::parse(&text).expect_err(bad).to_string();
        assert!(error.contains(needle), "{bad}: {error}");
    }
}

#[test]
fn an_admin_listener_off_loopback_needs_a_long_enough_token() {
    let loopback = format!("{BASE}[admin]\nlisten_addr = \"127.0.0.1:0\"\n");
    assert!(NodeConfig::parse(&loopback).is_ok());
    let v6_loopback = format!("{BASE}[admin]\nlisten_addr = \"[::1]:0\"\n");
    assert!(NodeConfig::parse(&v6_loopback).is_ok());
    let default = NodeConfig::parse(BASE).expect("defaults");
    assert!(
        default.admin.listen_addr.ip().is_loopback(),
        "loopback by default"
    );
    for addr in ["0.0.0.0:9443", "10.0.0.5:9443", "[::]:9443"] {
        let open = format!("{BASE}[admin]\nlisten_addr = \"{addr}\"\n");
        let error = NodeConfig::parse(&open).expect_err(addr).to_string();
        assert!(error.contains("is not loopback"), "{addr}: {error}");
        let short = format!("{BASE}[admin]\nlisten_addr = \"{addr}\"\ntoken = \"short\"\n");
        assert!(
            NodeConfig::parse(&short).is_err(),
            "{addr} with a short token"
        );
        let guarded = format!(
            "{BASE}[admin]\nlisten_addr = \"{addr}\"\ntoken = \"a-long-admin-token-0123\"\n"
        );
        assert!(NodeConfig::parse(&guarded).is_ok(), "{addr} with a token");
    }
}

#[test]
fn restart_only_settings_are_reported_and_kept() {
    let old = NodeConfig::parse(BASE).expect("old");
    let text = "[node]\nname = \"b\"\nregion = \"r\"\n[http]\nlisten_addr = \"127.0.0.1:1\"\n\
         [[keys]]\nkey = \"a-new-key-0123456789\"\ntenant = \"t\"\n"
        .to_owned();
    let new = NodeConfig::parse(&text).expect("new");
    assert_eq!(new.needs_restart(&old), vec!["node", "http"]);
    let applied = node::reload::keep_restart_only(new, &old);
    assert_eq!(applied.node.name.as_str(), "a");
    assert_eq!(applied.keys.len(), 1, "keys apply without a restart");
}
