//! `gatemesh offering …`: generate the operator key, print the signed
//! listing, publish it to a registry. `main.rs` only parses and dispatches.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::listing::{self, SignedOffering};
use super::publish::{self, RetryPolicy};
use super::{Offering, OfferingSources, OperatorKey, configured_prices};
use crate::NodeConfig;
use crate::cluster::unix_ms;

/// `gatemesh offering <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum OfferingCommand {
    /// Write a new secp256k1 operator key to FILE (mode 0600; never
    /// overwrites) and print its Ethereum address.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the signed listing envelope (JSON) on stdout.
    Show(Source),
    /// POST the signed listing to a marketplace registry, with retries.
    Publish {
        /// Where the listing comes from.
        #[command(flatten)]
        source: Source,
        /// The registry URL (default: `offering.registry_url` of --config).
        #[arg(long)]
        to: Option<String>,
        /// Most POSTs (connection errors, timeouts and 5xx are retried).
        #[arg(long, default_value_t = 5)]
        attempts: u32,
    },
}

/// Where the listing comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// Build and sign the listing from this node configuration (offline:
    /// benchmarks are empty, there is no live traffic here).
    #[arg(long, required_unless_present = "from", conflicts_with = "from")]
    pub config: Option<PathBuf>,
    /// Fetch the served listing from a running gateway's public URL
    /// (`<URL>/v1/offering`, with live benchmarks) and verify it.
    #[arg(long)]
    pub from: Option<String>,
    /// Accept a self-signed certificate from --from (local use only).
    #[arg(long)]
    pub insecure: bool,
}

/// Runs one offering command; what it prints is its product.
pub async fn run(command: OfferingCommand) -> anyhow::Result<()> {
    match command {
        OfferingCommand::Keygen { out } => {
            let key = OperatorKey::write_new(&out)?;
            println!("{}", super::key::checksum_address(&key.address()));
            eprintln!("operator key written to {} (mode 0600)", out.display());
        }
        OfferingCommand::Show(source) => {
            let (envelope, _) = load(&source).await?;
            println!("{}", serde_json::to_string(&envelope)?);
        }
        OfferingCommand::Publish {
            source,
            to,
            attempts,
        } => {
            let (envelope, registry) = load(&source).await?;
            let Some(to) = to.or(registry) else {
                bail!("no registry: pass --to URL or set offering.registry_url");
            };
            let body = bytes::Bytes::from(serde_json::to_vec(&envelope)?);
            let policy = RetryPolicy {
                max_attempts: attempts,
                ..RetryPolicy::default()
            };
            let report = publish::publish(&client(false)?, &to, body, &policy).await?;
            println!(
                "published to {to}: {} after {} attempt(s)\n{}",
                report.status, report.attempts, report.body
            );
        }
    }
    Ok(())
}

/// The signed envelope and the configured registry (with --config).
async fn load(source: &Source) -> anyhow::Result<(SignedOffering, Option<String>)> {
    if let Some(path) = &source.config {
        let config = NodeConfig::load(path)?;
        let Some(offering) = config.offering.clone() else {
            bail!("{}: no [offering] section", path.display());
        };
        let key = OperatorKey::load(&offering.signing_key_path)?;
        let pipelines: Vec<_> = config.api.pipelines.iter().copied().collect();
        let registry = offering.registry_url.as_ref().map(url::Url::to_string);
        let service = Offering::new(
            offering.clone(),
            key,
            OfferingSources {
                pipelines: Arc::new(move || pipelines.clone()),
                prices: configured_prices(&offering),
                cluster: None,
                benchmarks: None,
            },
        );
        let envelope = service.signed().map_err(anyhow::Error::msg)?;
        return Ok((envelope, registry));
    }
    let Some(from) = &source.from else {
        bail!("give --config FILE or --from URL");
    };
    let url = format!("{}/v1/offering", from.trim_end_matches('/'));
    let response = client(source.insecure)?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    let envelope: SignedOffering = response.json().await.context("reading the envelope")?;
    let listing = listing::verify(&envelope, unix_ms() / 1000)
        .map_err(|e| anyhow::anyhow!("{url}: the listing does not verify: {e}"))?;
    eprintln!(
        "{url}: signed by {} ({}), valid until {}",
        envelope.address, listing.name, listing.valid_until
    );
    Ok((envelope, None))
}

fn client(insecure: bool) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}
