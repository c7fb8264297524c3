//! The marketplace offering end to end (acceptance item 7): a gateway with
//! `[offering]` serves live traffic, then `GET /v1/offering` (no API key)
//! returns a signed listing that validates against
//! `deploy/offering.schema.json`, carries non-empty benchmarks, and whose
//! signature verifies with an implementation independent of ours:
//! libsecp256k1 (`secp256k1` crate) for recovery and `tiny-keccak` for the
//! EIP-191 hash and the address.

use anyhow::{Context, ensure};
use mesh_core::Pipeline;
use serde_json::{Value, json};
use simulations::emulator::Emulator;
use tests::{Gateway, GatewayConfig, all_pipelines_spec};
use tiny_keccak::{Hasher, Keccak};

fn keccak(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Keccak::v256();
    for part in parts {
        hasher.update(part);
    }
    let mut out = [0u8; 32];
    hasher.finalize(&mut out);
    out
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    let text = text.strip_prefix("0x").context("0x prefix")?;
    ensure!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).context("hex digit"))
        .collect()
}

/// The address that signed `message` (EIP-191 personal message), computed
/// with libsecp256k1 and tiny-keccak only.
fn recover(message: &[u8], signature: &[u8]) -> anyhow::Result<String> {
    use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
    ensure!(
        signature.len() == 65,
        "signature of {} bytes",
        signature.len()
    );
    let v = signature[64];
    ensure!(v == 27 || v == 28, "v = {v}");
    let digest = keccak(&[
        b"\x19Ethereum Signed Message:\n",
        message.len().to_string().as_bytes(),
        message,
    ]);
    let recovery = RecoveryId::try_from(i32::from(v - 27))?;
    let signature = RecoverableSignature::from_compact(&signature[..64], recovery)?;
    let secp = secp256k1::Secp256k1::verification_only();
    let key = secp.recover_ecdsa(secp256k1::Message::from_digest(digest), &signature)?;
    let hash = keccak(&[&key.serialize_uncompressed()[1..]]);
    Ok(format!(
        "0x{}",
        hash[12..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

#[tokio::test]
async fn the_served_listing_validates_and_its_signature_verifies_independently()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key_path = dir.path().join("operator.key");
    let key = node::offering::OperatorKey::write_new(&key_path)?;
    let expected = node::offering::key::checksum_address(&key.address()).to_ascii_lowercase();

    let orchestrator = Emulator::start(all_pipelines_spec("all", 4)).await?;
    let mut toml = GatewayConfig::new(vec![orchestrator.url().to_owned()])
        .api(r#"pipelines = ["text-to-image", "llm"]"#)
        .toml();
    toml.push_str(&format!(
        r#"
[offering]
name = "e2e gateway"
description = "test listing"
contact = "ops@example.com"
url = "https://example.com"
signing_key_path = {key_path:?}
benchmark_window_s = 600

[[offering.regions]]
region = "local"
endpoint = "https://127.0.0.1"

[offering.sla]
availability_percent = 99.5
support_response_minutes = 60

[[offering.sla.latency]]
pipeline = "text-to-image"
p95_ms = 5000

[[offering.prices]]
pipeline = "text-to-image"
model_id = "default"
tier = "default"
unit = "per_inference_run"
price_per_unit_nano_usd = 4000000
"#
    ));
    let gateway = Gateway::start_toml(&toml).await?;
    gateway.wait_ready().await?;
    gateway.wait_capable(Pipeline::TextToImage, 1).await?;

    // Live traffic, so the benchmarks have something to say.
    const JOBS: u64 = 6;
    for i in 0..JOBS {
        let response = gateway
            .post_json(
                "/text-to-image",
                &json!({ "prompt": format!("lighthouse {i}") }),
            )
            .send()
            .await?;
        ensure!(response.status() == 200, "job {i}: {}", response.status());
    }

    let response = gateway.get("/v1/offering").send().await?;
    ensure!(
        response.status() == 200,
        "/v1/offering: {}",
        response.status()
    );
    ensure!(response.headers().contains_key("x-request-id"));
    let envelope: Value = response.json().await?;
    let listing_text = envelope["listing"]
        .as_str()
        .context("listing is a string")?;
    let signature = unhex(envelope["signature"].as_str().context("signature")?)?;
    let address = envelope["address"].as_str().context("address")?;
    let listing: Value = serde_json::from_str(listing_text)?;

    // The schema in deploy/ accepts the listing (and rejects a broken one).
    let schema: Value = serde_json::from_str(include_str!("../../deploy/offering.schema.json"))?;
    if let Err(error) = jsonschema::validate(&schema, &listing) {
        anyhow::bail!("the listing does not match the schema: {error}\n{listing:#}");
    }
    let mut broken = listing.clone();
    broken["benchmarks"]["entries"] = json!([{ "region": "local" }]);
    ensure!(
        jsonschema::validate(&schema, &broken).is_err(),
        "the schema is too loose"
    );

    // The signature recovers, independently, to the published address.
    let signer = recover(listing_text.as_bytes(), &signature)?;
    ensure!(signer == expected, "recovered {signer}, key is {expected}");
    ensure!(
        address.to_ascii_lowercase() == expected,
        "envelope address {address}"
    );
    ensure!(
        listing["signer"].as_str().map(str::to_ascii_lowercase) == Some(expected.clone()),
        "listing signer {}",
        listing["signer"]
    );
    // A tampered listing does not.
    let tampered = listing_text.replacen("e2e gateway", "e2e gatewaz", 1);
    ensure!(tampered != listing_text);
    ensure!(
        recover(tampered.as_bytes(), &signature).map_or(true, |a| a != expected),
        "a tampered listing still verified"
    );

    // Benchmarks measured from the jobs above; pipelines, SLA and prices as configured.
    let entries = listing["benchmarks"]["entries"]
        .as_array()
        .context("entries")?;
    let entry = entries
        .iter()
        .find(|e| e["pipeline"] == "text-to-image" && e["region"] == "local")
        .with_context(|| format!("no text-to-image benchmark in {entries:?}"))?;
    ensure!(entry["requests"].as_u64() == Some(JOBS), "{entry}");
    ensure!(entry["successes"].as_u64() == Some(JOBS), "{entry}");
    ensure!(entry["success_rate"].as_f64() == Some(1.0), "{entry}");
    let (p50, p95) = (entry["p50_ms"].as_u64(), entry["p95_ms"].as_u64());
    ensure!(p50.is_some() && p95 >= p50, "p50 {p50:?} p95 {p95:?}");
    ensure!(listing["benchmarks"]["window_s"] == 600);
    let offered: Vec<&str> = listing["pipelines"]
        .as_array()
        .context("pipelines")?
        .iter()
        .filter_map(|p| p["pipeline"].as_str())
        .collect();
    ensure!(offered == ["text-to-image", "llm"], "pipelines {offered:?}");
    ensure!(
        listing["pipelines"][0]["models"][0]["warm"] == true,
        "models {}",
        listing["pipelines"][0]["models"]
    );
    ensure!(listing["sla"]["availability_percent"] == 99.5);
    ensure!(listing["pricing"]["prices"][0]["price_per_unit_nano_usd"] == 4_000_000);

    gateway.shutdown().await;
    drop(orchestrator);
    Ok(())
}

#[tokio::test]
async fn without_an_offering_the_path_is_not_found() -> anyhow::Result<()> {
    let orchestrator = Emulator::start(all_pipelines_spec("all", 1)).await?;
    let gateway = Gateway::start(&GatewayConfig::new(vec![orchestrator.url().to_owned()])).await?;
    let response = gateway.get("/v1/offering").send().await?;
    ensure!(response.status() == 404, "{}", response.status());
    gateway.shutdown().await;
    Ok(())
}
