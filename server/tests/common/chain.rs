//! A local anvil chain with the contracts deployed from forge's build of
//! contracts/, and wallets with real pools: for the chain tests and the
//! settle benchmark.

#![allow(dead_code, unreachable_pub)] // each user takes a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address as EvmAddress, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolValue;
use k256::ecdsa::SigningKey;

/// The contract's withdrawal notice in the tests: a requested withdrawal can
/// be taken an hour after the request (tests move anvil's clock).
pub const WITHDRAWAL_NOTICE_SECONDS: u64 = 3_600;
/// The delay of a new relayer or platform wallet: longer than the notice.
pub const ADMIN_DELAY_SECONDS: u64 = 7_200;

/// anvil's first well-known development key: the deployer and owner.
const DEPLOYER: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

sol! {
    #[sol(rpc)]
    interface TestToken {
        function mint(address to, uint256 amount) external;
        function approve(address spender, uint256 amount) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
    }
    #[sol(rpc)]
    interface Pool {
        function deposit(uint256 amount) external;
        function deposits(address consumer) external view returns (uint256);
        function requestWithdrawal(uint256 amount) external;
        function withdraw() external returns (uint256 paid);
        function setMaxRatePerSecond(uint256 rate) external;
        error WithdrawalNotYet(uint64 availableAt);
        error NoWithdrawalRequested(address consumer);
    }
}

fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn foundry(tool: &str, var: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(
        || {
            root().join(format!(
                "tools/npm/node_modules/@foundry-rs/{tool}-linux-amd64/bin/{tool}"
            ))
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing; run `cargo xtask test`, which installs foundry from the npm registry",
        path.display()
    );
    path
}

/// A local anvil on a free port, stopped on drop.
pub struct Anvil {
    child: Child,
    pub url: String,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(foundry("anvil", "LX_ANVIL"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("anvil starts");
        let url = format!("http://127.0.0.1:{port}");
        let anvil = Self { child, url };
        let provider = ProviderBuilder::new().connect_http(anvil.url.parse().expect("url"));
        for _ in 0..100 {
            if provider.get_chain_id().await.is_ok() {
                return anvil;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("anvil did not answer on {}", anvil.url);
    }
}

/// Bytecode of a contract from a forge build of contracts/ into `out`.
fn bytecode(out: &Path, file: &str, contract: &str) -> Bytes {
    let artifact = out.join(file).join(format!("{contract}.json"));
    let text = std::fs::read_to_string(&artifact).expect("artifact");
    let json: serde_json::Value = serde_json::from_str(&text).expect("artifact json");
    let hex = json["bytecode"]["object"].as_str().expect("bytecode");
    hex.parse().expect("hex bytecode")
}

/// forge builds contracts/src into a directory of its own (tests run at
/// once); the forge tests and the deploy script are not needed here, and
/// compiling them (solcjs, via IR) costs about 40 s.
fn build_contracts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(foundry("forge", "LX_FORGE"))
        .args(["build", "--skip", "test", "--skip", "script", "--out"])
        .arg(dir.path().join("out"))
        .arg("--cache-path")
        .arg(dir.path().join("cache"))
        .current_dir(root().join("contracts"))
        .output()
        .expect("forge runs");
    assert!(
        out.status.success(),
        "forge build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The deployed contracts and who is who.
pub struct Deployed {
    pub anvil: Anvil,
    pub usdc: EvmAddress,
    pub settlement: EvmAddress,
    pub deployer: PrivateKeySigner,
    pub relayer: PrivateKeySigner,
    pub platform: EvmAddress,
    _build: tempfile::TempDir,
}

async fn deploy(provider: &impl Provider, code: Bytes) -> EvmAddress {
    let tx = TransactionRequest::default().with_deploy_code(code);
    let receipt = provider
        .send_transaction(tx)
        .await
        .expect("deploy sent")
        .get_receipt()
        .await
        .expect("deployed");
    receipt.contract_address.expect("a contract address")
}

pub async fn deployed() -> Deployed {
    let build = build_contracts();
    let out = build.path().join("out");
    let anvil = Anvil::start().await;
    let deployer: PrivateKeySigner = DEPLOYER.parse().expect("key");
    let relayer = PrivateKeySigner::random();
    let platform = PrivateKeySigner::random().address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer.clone()))
        .connect_http(anvil.url.parse().expect("url"));
    let usdc = deploy(&provider, bytecode(&out, "TestUsdc.sol", "TestUsdc")).await;
    let args = (
        usdc,
        deployer.address(),
        relayer.address(),
        platform,
        WITHDRAWAL_NOTICE_SECONDS,
        ADMIN_DELAY_SECONDS,
    )
        .abi_encode_params();
    let mut code = bytecode(&out, "LuxxonSettlement.sol", "LuxxonSettlement").to_vec();
    code.extend_from_slice(&args);
    let settlement = deploy(&provider, code.into()).await;
    Deployed {
        anvil,
        usdc,
        settlement,
        deployer,
        relayer,
        platform,
        _build: build,
    }
}

impl Deployed {
    /// Gives the wallet of `key` gas money and `usdc` micro-USDC, and
    /// deposits `pool` of it into its pool.
    pub async fn fund(&self, key: &SigningKey, usdc: u64, pool: u64) {
        let owner = ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.deployer.clone()))
            .connect_http(self.anvil.url.parse().expect("url"));
        let who = PrivateKeySigner::from_signing_key(key.clone()).address();
        self.send_eth(who).await;
        TestToken::new(self.usdc, &owner)
            .mint(who, U256::from(usdc))
            .send()
            .await
            .expect("mint")
            .get_receipt()
            .await
            .expect("minted");
        if pool > 0 {
            self.deposit(key, pool).await;
        }
    }

    pub async fn deposit(&self, key: &SigningKey, amount: u64) {
        let consumer = ProviderBuilder::new()
            .wallet(EthereumWallet::from(PrivateKeySigner::from_signing_key(
                key.clone(),
            )))
            .connect_http(self.anvil.url.parse().expect("url"));
        TestToken::new(self.usdc, &consumer)
            .approve(self.settlement, U256::from(amount))
            .send()
            .await
            .expect("approve")
            .get_receipt()
            .await
            .expect("approved");
        Pool::new(self.settlement, &consumer)
            .deposit(U256::from(amount))
            .send()
            .await
            .expect("deposit")
            .get_receipt()
            .await
            .expect("deposited");
    }

    fn as_consumer(&self, key: &SigningKey) -> impl Provider + use<> {
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(PrivateKeySigner::from_signing_key(
                key.clone(),
            )))
            .connect_http(self.anvil.url.parse().expect("url"))
    }

    /// The consumer asks for `amount` of its pool back (step one).
    pub async fn request_withdrawal(&self, key: &SigningKey, amount: u64) {
        let p = self.as_consumer(key);
        Pool::new(self.settlement, &p)
            .requestWithdrawal(U256::from(amount))
            .send()
            .await
            .expect("requestWithdrawal")
            .get_receipt()
            .await
            .expect("requested");
    }

    /// The consumer takes its requested withdrawal (step two); the error is
    /// the contract's refusal.
    pub async fn withdraw(&self, key: &SigningKey) -> Result<(), String> {
        let p = self.as_consumer(key);
        let pool = Pool::new(self.settlement, &p);
        pool.withdraw().call().await.map_err(|e| {
            match e.as_decoded_interface_error::<Pool::PoolErrors>() {
                Some(Pool::PoolErrors::WithdrawalNotYet(w)) => {
                    format!("WithdrawalNotYet(availableAt {})", w.availableAt)
                }
                Some(Pool::PoolErrors::NoWithdrawalRequested(_)) => "NoWithdrawalRequested".into(),
                None => e.to_string(),
            }
        })?;
        pool.withdraw()
            .send()
            .await
            .map_err(|e| e.to_string())?
            .get_receipt()
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The consumer caps the rate any settlement of its pool may use.
    pub async fn set_cap(&self, key: &SigningKey, rate: u64) {
        let p = self.as_consumer(key);
        Pool::new(self.settlement, &p)
            .setMaxRatePerSecond(U256::from(rate))
            .send()
            .await
            .expect("setMaxRatePerSecond")
            .get_receipt()
            .await
            .expect("cap set");
    }

    /// Moves the chain's clock on and mines a block.
    pub async fn advance(&self, seconds: u64) {
        let p = ProviderBuilder::new().connect_http(self.anvil.url.parse().expect("url"));
        let _: serde_json::Value = p
            .raw_request("evm_increaseTime".into(), [seconds])
            .await
            .expect("evm_increaseTime");
        let _: serde_json::Value = p
            .raw_request("evm_mine".into(), ())
            .await
            .expect("evm_mine");
    }

    pub async fn chain(&self) -> lx_server::chain::evm::EvmChain {
        lx_server::chain::evm::EvmChain::connect(
            &self.anvil.url,
            31337,
            lx_protocol::wallet::Address(self.settlement.0.0),
        )
        .await
        .expect("the server reaches the chain")
    }
}

pub fn relayer_config() -> lx_server::settlement::RelayerConfig {
    lx_server::settlement::RelayerConfig {
        interval: std::time::Duration::from_millis(100),
        batch_max: 100,
        confirmations: 1,
        debt_retry_ms: 1_000,
        resubmit_after_ms: 2_000,
    }
}

impl Deployed {
    pub async fn settler(&self) -> lx_server::chain::evm::EvmSettler {
        lx_server::chain::evm::EvmSettler::connect(
            &self.anvil.url,
            31337,
            lx_protocol::wallet::Address(self.settlement.0.0),
            self.relayer.clone(),
        )
        .await
        .expect("the relayer reaches the chain")
    }

    /// Gas money for the relayer's key.
    pub async fn fund_relayer(&self) {
        self.send_eth(self.relayer.address()).await;
    }

    /// One ether of gas money from the deployer.
    async fn send_eth(&self, to: EvmAddress) {
        let owner = ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.deployer.clone()))
            .connect_http(self.anvil.url.parse().expect("url"));
        owner
            .send_transaction(
                TransactionRequest::default()
                    .with_to(to)
                    .with_value(U256::from(10u64).pow(U256::from(18u64))),
            )
            .await
            .expect("eth sent")
            .get_receipt()
            .await
            .expect("eth arrived");
    }

    pub async fn usdc_of(&self, who: EvmAddress) -> u64 {
        let p = ProviderBuilder::new().connect_http(self.anvil.url.parse().expect("url"));
        u64::try_from(
            TestToken::new(self.usdc, &p)
                .balanceOf(who)
                .call()
                .await
                .expect("balance"),
        )
        .unwrap()
    }

    pub async fn pool_of(&self, who: EvmAddress) -> u64 {
        let p = ProviderBuilder::new().connect_http(self.anvil.url.parse().expect("url"));
        u64::try_from(
            Pool::new(self.settlement, &p)
                .deposits(who)
                .call()
                .await
                .expect("pool"),
        )
        .unwrap()
    }
}
