//! The demo's settlement chain: a local anvil, the contracts from forge's
//! build of contracts/, the relayer's key in an encrypted keystore, and the
//! consumer's pool, all through foundry's own command-line tools.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k256::ecdsa::SigningKey;
use lx_protocol::wallet::Address;

use super::{Piped, Proc, free_port};
use crate::npm::NpmTools;

/// A requested withdrawal can be taken two days later: longer than the
/// server's longest session (a day), its settle delay and the relayer's
/// margin, which the server checks at start.
pub(crate) const WITHDRAWAL_NOTICE_SECONDS: u64 = 172_800;
/// A new relayer or platform wallet takes effect three days after it is
/// proposed: longer than the notice, so consumers can leave first.
const ADMIN_DELAY_SECONDS: u64 = 259_200;

/// anvil's first well-known development key: deploys and owns the contracts.
const DEPLOYER: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub(super) const CHAIN_ID: u64 = 31337;
/// The keystore's password; the server gets it from this variable.
pub(super) const PASSWORD_ENV: &str = "LX_RELAYER_PASSWORD";

pub(super) struct DemoChain {
    pub(super) url: String,
    pub(super) usdc: String,
    pub(super) settlement: String,
    pub(super) platform: Address,
    pub(super) relayer: Address,
    pub(super) keystore: PathBuf,
    pub(super) password: String,
    cast: PathBuf,
}

pub(super) fn hex_key(key: &SigningKey) -> String {
    let bytes = key.to_bytes();
    let mut s = String::from("0x");
    for b in bytes.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn tool(tools: &NpmTools, var: &str) -> anyhow::Result<PathBuf> {
    tools
        .binaries
        .iter()
        .find(|(v, _)| *v == var)
        .map(|(_, p)| p.clone())
        .with_context(|| format!("{var} is not among the npm tools"))
}

/// Runs a foundry command; its trimmed stdout.
fn run(program: &Path, args: &[&str], dir: Option<&Path>) -> anyhow::Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            program.display(),
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The bytecode forge wrote for `contract` of `file`.
fn bytecode(out: &Path, file: &str, contract: &str) -> anyhow::Result<String> {
    let path = out.join(file).join(format!("{contract}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    json["bytecode"]["object"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no bytecode in {}", path.display()))
}

impl DemoChain {
    /// Starts anvil, builds and deploys the contracts, makes the relayer's
    /// keystore and gives the relayer gas money.
    pub(super) fn start(
        dir: &Path,
        cache: &Path,
        tools: &NpmTools,
    ) -> anyhow::Result<(Proc, Self, Duration, Duration)> {
        let anvil = tool(tools, "LX_ANVIL")?;
        let forge = tool(tools, "LX_FORGE")?;
        let cast = tool(tools, "LX_CAST")?;
        let t = Instant::now();
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let mut proc = Proc::spawn(
            "chain",
            Command::new(&anvil).args(["--host", "127.0.0.1", "--port", &port.to_string()]),
            dir,
            "chain.log",
            Piped::No,
        )?
        .ends_by_signal();
        let deadline = Instant::now() + Duration::from_secs(10);
        while run(&cast, &["chain-id", "--rpc-url", &url], None).is_err() {
            proc.check_running()?;
            if Instant::now() > deadline {
                bail!("anvil did not answer on {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = t.elapsed();

        let t = Instant::now();
        let out = cache.join("out");
        let cache_path = cache.join("cache");
        run(
            &forge,
            &[
                "build",
                // The contracts only: the forge tests take most of the time.
                "--skip",
                "test",
                "--skip",
                "script",
                "--out",
                &out.display().to_string(),
                "--cache-path",
                &cache_path.display().to_string(),
            ],
            Some(&crate::root().join("contracts")),
        )?;
        let relayer_key = SigningKey::random(&mut rand::rngs::OsRng);
        let relayer = Address::from_signing_key(&relayer_key);
        let platform = Address::from_signing_key(&SigningKey::random(&mut rand::rngs::OsRng));
        let keystores = dir.join("keystore");
        std::fs::create_dir_all(&keystores)?;
        let password = format!("demo-{}", std::process::id());
        run(
            &cast,
            &[
                "wallet",
                "import",
                "relayer",
                "--private-key",
                &hex_key(&relayer_key),
                "--keystore-dir",
                &keystores.display().to_string(),
                "--unsafe-password",
                &password,
            ],
            None,
        )?;
        let mut chain = Self {
            url,
            usdc: String::new(),
            settlement: String::new(),
            platform,
            relayer,
            keystore: keystores.join("relayer"),
            password,
            cast,
        };
        chain.usdc = chain.deploy(&bytecode(&out, "TestUsdc.sol", "TestUsdc")?)?;
        let args = run(
            &chain.cast,
            &[
                "abi-encode",
                "constructor(address,address,address,address,uint64,uint64)",
                &chain.usdc,
                &deployer_address(),
                &relayer.to_checksum(),
                &platform.to_checksum(),
                &WITHDRAWAL_NOTICE_SECONDS.to_string(),
                &ADMIN_DELAY_SECONDS.to_string(),
            ],
            None,
        )?;
        let code = bytecode(&out, "LuxxonSettlement.sol", "LuxxonSettlement")?;
        chain.settlement = chain.deploy(&format!("{code}{}", args.trim_start_matches("0x")))?;
        chain.send(DEPLOYER, &relayer.to_checksum(), &[], Some("1ether"))?;
        Ok((proc, chain, started, t.elapsed()))
    }

    fn deploy(&self, code: &str) -> anyhow::Result<String> {
        let out = run(
            &self.cast,
            &[
                "send",
                "--rpc-url",
                &self.url,
                "--private-key",
                DEPLOYER,
                "--json",
                "--create",
                code,
            ],
            None,
        )?;
        let receipt: serde_json::Value = serde_json::from_str(&out).context("cast's receipt")?;
        receipt["contractAddress"]
            .as_str()
            .map(str::to_owned)
            .context("the deployment has no contract address")
    }

    /// `cast send` to `to` with `call` (signature then arguments).
    fn send(&self, key: &str, to: &str, call: &[&str], value: Option<&str>) -> anyhow::Result<()> {
        let mut args = vec!["send", "--rpc-url", &self.url, "--private-key", key];
        if let Some(v) = value {
            args.extend(["--value", v]);
        }
        args.push(to);
        args.extend(call);
        run(&self.cast, &args, None).map(|_| ())
    }

    fn read(&self, contract: &str, call: &[&str]) -> anyhow::Result<u64> {
        let mut args = vec!["call", "--rpc-url", &self.url, contract];
        args.extend(call);
        let out = run(&self.cast, &args, None)?;
        // "1000000 [1e6]" or "1000000".
        out.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("cast call printed '{out}'"))
    }

    /// Gas money, `minted` micro-USDC, and `pool` of it deposited.
    pub(super) fn fund(&self, key: &SigningKey, minted: u64, pool: u64) -> anyhow::Result<()> {
        let who = Address::from_signing_key(key).to_checksum();
        let key = hex_key(key);
        self.send(DEPLOYER, &who, &[], Some("1ether"))?;
        self.send(
            DEPLOYER,
            &self.usdc,
            &["mint(address,uint256)", &who, &minted.to_string()],
            None,
        )?;
        self.send(
            &key,
            &self.usdc,
            &[
                "approve(address,uint256)",
                &self.settlement,
                &pool.to_string(),
            ],
            None,
        )?;
        self.send(
            &key,
            &self.settlement,
            &["deposit(uint256)", &pool.to_string()],
            None,
        )
    }

    pub(super) fn usdc_of(&self, who: Address) -> anyhow::Result<u64> {
        self.read(
            &self.usdc,
            &["balanceOf(address)(uint256)", &who.to_checksum()],
        )
    }

    /// The consumer caps, once, the rate any settlement of its pool may use.
    pub(super) fn set_cap(&self, key: &SigningKey, micro_usdc_per_s: u64) -> anyhow::Result<()> {
        self.send(
            &hex_key(key),
            &self.settlement,
            &[
                "setMaxRatePerSecond(uint256)",
                &micro_usdc_per_s.to_string(),
            ],
            None,
        )
    }

    pub(super) fn pool_of(&self, who: Address) -> anyhow::Result<u64> {
        self.read(
            &self.settlement,
            &["deposits(address)(uint256)", &who.to_checksum()],
        )
    }
}

fn deployer_address() -> String {
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".to_owned()
}
