//! The server against a real chain: a local anvil with the contracts
//! deployed from forge's build of contracts/, consumers with real pools.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address as EvmAddress, Bytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolValue;
use k256::ecdsa::SigningKey;
use serde_json::json;

use crate::common::{Actor, BOGOTA, TestApp};

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
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
pub(crate) struct Anvil {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    pub(crate) async fn start() -> Self {
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

/// forge builds contracts/ into a directory of its own (tests run at once).
fn build_contracts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(foundry("forge", "LX_FORGE"))
        .args(["build", "--out"])
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
#[allow(dead_code)] // the relayer and the fee wallet are for the settlement tests
pub(crate) struct Deployed {
    pub(crate) anvil: Anvil,
    pub(crate) usdc: EvmAddress,
    pub(crate) settlement: EvmAddress,
    pub(crate) deployer: PrivateKeySigner,
    pub(crate) relayer: PrivateKeySigner,
    pub(crate) platform: EvmAddress,
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

pub(crate) async fn deployed() -> Deployed {
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
    let args = (usdc, deployer.address(), relayer.address(), platform).abi_encode_params();
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
    pub(crate) async fn fund(&self, key: &SigningKey, usdc: u64, pool: u64) {
        let owner = ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.deployer.clone()))
            .connect_http(self.anvil.url.parse().expect("url"));
        let signer = PrivateKeySigner::from_signing_key(key.clone());
        let who = signer.address();
        owner
            .send_transaction(
                TransactionRequest::default()
                    .with_to(who)
                    .with_value(U256::from(10u64).pow(U256::from(18u64))),
            )
            .await
            .expect("eth sent")
            .get_receipt()
            .await
            .expect("eth arrived");
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

    pub(crate) async fn deposit(&self, key: &SigningKey, amount: u64) {
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

    pub(crate) async fn chain(&self) -> lx_server::chain::evm::EvmChain {
        lx_server::chain::evm::EvmChain::connect(
            &self.anvil.url,
            31337,
            lx_protocol::wallet::Address(self.settlement.0.0),
        )
        .await
        .expect("the server reaches the chain")
    }
}

async fn request(t: &TestApp, consumer: &Actor, seconds: u32) -> crate::common::Resp {
    t.post(
        "/sessions",
        consumer.auth(),
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": seconds}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_is_the_onchain_pool_counting_every_open_session_and_a_top_up_clears_it() {
    let d = deployed().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer("chain-consumer").await;
    t.supplier("chain-supplier", BOGOTA, true).await;
    // 60 s at 1000 µUSDC/s holds 0.06 USDC; the pool has 0.05.
    d.fund(&consumer.key, 1_000_000, 50_000).await;
    let refused = request(&t, &consumer, 60)
        .await
        .expect(400, "INSUFFICIENT_CREDIT");
    assert!(refused.message().contains("50000"), "{}", refused.message());

    // A top-up on chain counts at once, no restart.
    d.deposit(&consumer.key, 100_000).await;
    let first = request(&t, &consumer, 60).await.ok();
    let mut held = first.data()["holdMicroUsdc"].as_u64().unwrap();
    // More sessions until the pool is held in full: the open ones always
    // fit in it, and the one refused would not (demand raises the rate).
    let mut refused = None;
    for _ in 0..5 {
        let resp = request(&t, &consumer, 60).await;
        if resp.status == 200 {
            held += resp.data()["holdMicroUsdc"].as_u64().unwrap();
            assert!(
                held <= 150_000,
                "open sessions hold {held} of a 150000 pool"
            );
        } else {
            refused = Some(resp.expect(400, "INSUFFICIENT_CREDIT"));
            break;
        }
    }
    let refused = refused.expect("the pool runs out");
    assert!(
        refused.message().contains("holds 150000"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_reads_the_pool_the_balance_and_the_cap_from_the_chain() {
    let d = deployed().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer("wallet-consumer").await;
    d.fund(&consumer.key, 2_000_000, 750_000).await;
    let wallet = t.get("/wallet", consumer.auth()).await.ok();
    let w = wallet.data();
    assert_eq!(w["walletAddress"], consumer.wallet.to_checksum());
    assert_eq!(w["chainId"], 31337);
    assert_eq!(w["poolMicroUsdc"], 750_000);
    assert_eq!(w["usdcBalanceMicroUsdc"], 1_250_000);
    assert_eq!(w["maxRatePerSecondMicroUsdc"], serde_json::Value::Null);

    // Without a chain the answer says so rather than inventing numbers.
    let none = TestApp::spawn().await;
    let c = none.consumer("no-chain").await;
    let resp = none
        .get("/wallet", c.auth())
        .await
        .expect(503, "UPSTREAM_UNAVAILABLE");
    assert_eq!(resp.detail(), "chain:none");
}

fn relayer_config() -> lx_server::settlement::RelayerConfig {
    lx_server::settlement::RelayerConfig {
        interval: std::time::Duration::from_millis(100),
        batch_max: 100,
        confirmations: 1,
        max_attempts: 3,
        resubmit_after_ms: 2_000,
    }
}

impl Deployed {
    pub(crate) async fn settler(&self) -> lx_server::chain::evm::EvmSettler {
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
    pub(crate) async fn fund_relayer(&self) {
        let owner = ProviderBuilder::new()
            .wallet(EthereumWallet::from(self.deployer.clone()))
            .connect_http(self.anvil.url.parse().expect("url"));
        owner
            .send_transaction(
                TransactionRequest::default()
                    .with_to(self.relayer.address())
                    .with_value(U256::from(10u64).pow(U256::from(18u64))),
            )
            .await
            .expect("eth sent")
            .get_receipt()
            .await
            .expect("eth arrived");
    }

    pub(crate) async fn usdc_of(&self, who: EvmAddress) -> u64 {
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

    pub(crate) async fn pool_of(&self, who: EvmAddress) -> u64 {
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

fn evm_of(actor: &Actor) -> EvmAddress {
    EvmAddress::from(actor.wallet.0)
}

/// A session of `consumer` at BOGOTA, LIVE through the media double for
/// about `seconds`, then ended by the consumer; returns its id.
async fn a_metered_session(
    t: &TestApp,
    consumer: &Actor,
    supplier: &Actor,
    seconds: u64,
) -> String {
    let id = t.request(consumer, BOGOTA, 600).await;
    t.make_live(consumer, supplier, &id).await;
    tokio::time::sleep(std::time::Duration::from_millis(seconds * 1000 + 100)).await;
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    id
}

async fn settlement_state(
    t: &TestApp,
    consumer: &Actor,
    id: &str,
    want: &str,
) -> serde_json::Value {
    for _ in 0..200 {
        let s = t
            .get(format!("/settlements/{id}"), consumer.auth())
            .await
            .ok();
        if s.data()["state"] == want {
            return s.data().clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "settlement of {id} never {want}: {}",
        t.get(format!("/settlements/{id}"), consumer.auth())
            .await
            .data()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_settled_on_chain_and_the_operator_and_fee_wallet_get_exactly_the_meter()
 {
    let d = deployed().await;
    d.fund_relayer().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer("settle-consumer").await;
    let supplier = t.supplier("settle-supplier", BOGOTA, true).await;
    d.fund(&consumer.key, 10_000_000, 5_000_000).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let relayer = tokio::spawn(lx_server::settlement::run(
        Arc::clone(&t.app),
        Arc::new(d.settler().await),
        relayer_config(),
        stopped,
    ));

    let id = a_metered_session(&t, &consumer, &supplier, 3).await;
    let pending = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(
        pending.data()["state"],
        "NOT_READY",
        "the meter is final only after the settle delay"
    );
    // The test config settles after the default delay; the sweeper runs by hand.
    let ended = t.session(&consumer, &id).await;
    let ended_ms = lx_protocol::time::parse_millis(ended["endedAt"].as_str().unwrap()).unwrap();
    t.app.sweep(ended_ms + t.app.settle_delay_ms() + 1).await;
    let meter = t.session(&consumer, &id).await["meter"].clone();
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let fee = meter["feeMicroUsdc"].as_u64().unwrap();
    let charged = meter["chargedMicroUsdc"].as_u64().unwrap();
    assert!(charged > 0 && earned + fee == charged, "{meter}");

    let before = (
        d.usdc_of(evm_of(&supplier)).await,
        d.usdc_of(d.platform).await,
        d.pool_of(evm_of(&consumer)).await,
    );
    let confirmed = settlement_state(&t, &consumer, &id, "CONFIRMED").await;
    assert!(
        confirmed["txHash"].as_str().unwrap().starts_with("0x"),
        "{confirmed}"
    );
    assert_eq!(confirmed["sequence"], 1);
    assert_eq!(
        d.usdc_of(evm_of(&supplier)).await - before.0,
        earned,
        "the operator's share"
    );
    assert_eq!(d.usdc_of(d.platform).await - before.1, fee, "the fee");
    assert_eq!(
        before.2 - d.pool_of(evm_of(&consumer)).await,
        charged,
        "out of the consumer's pool"
    );
    let _ = stop.send(true);
    relayer.await.unwrap();
}

async fn rpc(d: &Deployed, method: &str, params: serde_json::Value) {
    let p = ProviderBuilder::new().connect_http(d.anvil.url.parse().expect("url"));
    let _: serde_json::Value = p
        .raw_request(method.to_owned().into(), params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"));
}

/// A session metered and final, its settlement queued; returns its id and meter.
async fn a_final_session(
    t: &TestApp,
    consumer: &Actor,
    supplier: &Actor,
) -> (String, serde_json::Value) {
    let id = a_metered_session(t, consumer, supplier, 2).await;
    let ended = t.session(consumer, &id).await;
    let ended_ms = lx_protocol::time::parse_millis(ended["endedAt"].as_str().unwrap()).unwrap();
    t.app.sweep(ended_ms + t.app.settle_delay_ms() + 1).await;
    let meter = t.session(consumer, &id).await["meter"].clone();
    (id, meter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayer_killed_between_submit_and_confirm_settles_once_after_its_restart() {
    use lx_server::settlement::pass;
    let d = deployed().await;
    d.fund_relayer().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer("restart-consumer").await;
    let supplier = t.supplier("restart-supplier", BOGOTA, true).await;
    d.fund(&consumer.key, 10_000_000, 5_000_000).await;
    let (id, meter) = a_final_session(&t, &consumer, &supplier).await;
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let config = relayer_config();

    // The node holds the transaction unmined while the relayer dies.
    rpc(&d, "evm_setAutomine", json!([false])).await;
    {
        let settler = d.settler().await;
        let p = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
        assert_eq!(p.submitted, 1, "{p:?}");
    }
    let submitted = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(submitted.data()["state"], "SUBMITTED");
    let tx = submitted.data()["txHash"].as_str().unwrap().to_owned();

    // It comes back; the block is mined meanwhile.
    rpc(&d, "evm_mine", json!([])).await;
    rpc(&d, "evm_setAutomine", json!([true])).await;
    let settler = d.settler().await;
    let p = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
    assert_eq!((p.confirmed, p.submitted), (1, 0), "{p:?}");
    let confirmed = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(confirmed.data()["state"], "CONFIRMED");
    assert_eq!(
        confirmed.data()["txHash"],
        tx.as_str(),
        "the same transaction, not a second one"
    );
    assert_eq!(d.usdc_of(evm_of(&supplier)).await, earned, "paid once");
    // Nothing left to do.
    let idle = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
    assert_eq!(idle, lx_server::settlement::Pass::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_transaction_is_looked_up_and_sent_again_and_settles_once() {
    use lx_server::settlement::pass;
    let d = deployed().await;
    d.fund_relayer().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer("lost-consumer").await;
    let supplier = t.supplier("lost-supplier", BOGOTA, true).await;
    d.fund(&consumer.key, 10_000_000, 5_000_000).await;
    let (id, meter) = a_final_session(&t, &consumer, &supplier).await;
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let config = relayer_config();
    let settler = d.settler().await;

    rpc(&d, "evm_setAutomine", json!([false])).await;
    assert_eq!(
        pass(&t.app, &settler, &config, t.app.now())
            .await
            .unwrap()
            .submitted,
        1
    );
    // The node forgets it.
    rpc(&d, "anvil_dropAllTransactions", json!([])).await;
    rpc(&d, "evm_setAutomine", json!([true])).await;
    // Not yet given up on: within resubmit_after nothing happens.
    let p = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
    assert_eq!(p, lx_server::settlement::Pass::default());
    let later = t.app.now() + config.resubmit_after_ms + 1;
    let p = pass(&t.app, &settler, &config, later).await.unwrap();
    assert_eq!(p.confirmed, 0, "no Settled event: not settled");
    let back = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(back.data()["state"], "PENDING");
    assert!(
        back.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("not mined")
    );
    // Sent again after its backoff, mined, confirmed.
    let p = pass(&t.app, &settler, &config, later + 60_000)
        .await
        .unwrap();
    assert_eq!(p.submitted, 1, "{p:?}");
    let p = pass(&t.app, &settler, &config, later + 60_001)
        .await
        .unwrap();
    assert_eq!(p.confirmed, 1, "{p:?}");
    assert_eq!(d.usdc_of(evm_of(&supplier)).await, earned, "paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_the_contract_refuses_are_failed_with_its_reason_and_not_retried() {
    use lx_server::settlement::pass;
    let d = deployed().await;
    d.fund_relayer().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let supplier = t.supplier("refused-supplier", BOGOTA, true).await;
    let config = relayer_config();
    let settler = d.settler().await;
    let db = t.dir.path().join("lx.db");
    let tamper = |sql: String| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        c.execute(&sql, []).unwrap();
    };

    // 1. Above the consumer's own cap.
    let capped = t.consumer("capped").await;
    d.fund(&capped.key, 10_000_000, 5_000_000).await;
    let consumer_wallet = ProviderBuilder::new()
        .wallet(EthereumWallet::from(PrivateKeySigner::from_signing_key(
            capped.key.clone(),
        )))
        .connect_http(d.anvil.url.parse().unwrap());
    lx_server::chain::evm::ILuxxonSettlement::new(d.settlement, &consumer_wallet)
        .setMaxRatePerSecond(U256::from(10u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let (capped_id, _) = a_final_session(&t, &capped, &supplier).await;

    // 2. More than rate × seconds (a record gone wrong).
    let greedy = t.consumer("greedy").await;
    d.fund(&greedy.key, 10_000_000, 5_000_000).await;
    let (greedy_id, _) = a_final_session(&t, &greedy, &supplier).await;

    assert_eq!(t.app.store.queue_settlements(t.app.now()).await.unwrap(), 2);
    tamper(format!(
        "UPDATE settlements SET to_amount = rate * seconds + 1 WHERE session_id = '{greedy_id}'"
    ));
    for _ in 0..3 {
        pass(&t.app, &settler, &config, t.app.now() + 120_000)
            .await
            .unwrap();
    }
    let capped_s = t
        .get(format!("/settlements/{capped_id}"), capped.auth())
        .await
        .ok();
    assert_eq!(capped_s.data()["state"], "FAILED", "{}", capped_s.data());
    assert!(
        capped_s.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("RateAboveMax")
    );
    let greedy_s = t
        .get(format!("/settlements/{greedy_id}"), greedy.auth())
        .await
        .ok();
    assert_eq!(greedy_s.data()["state"], "FAILED", "{}", greedy_s.data());
    assert!(
        greedy_s.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("OverCharge")
    );
    assert_eq!(capped_s.data()["attempts"], 1, "tried once, not forever");
    assert_eq!(greedy_s.data()["attempts"], 1);

    // 3. A sequence the contract is past, for a session it never settled
    // (a later one of the same consumer went first).
    let twice = t.consumer("twice").await;
    d.fund(&twice.key, 10_000_000, 5_000_000).await;
    let (first_id, _) = a_final_session(&t, &twice, &supplier).await;
    for _ in 0..3 {
        pass(&t.app, &settler, &config, t.app.now() + 240_000)
            .await
            .unwrap();
    }
    assert_eq!(
        t.get(format!("/settlements/{first_id}"), twice.auth())
            .await
            .data()["state"],
        "CONFIRMED"
    );
    let (second_id, _) = a_final_session(&t, &twice, &supplier).await;
    assert_eq!(t.app.store.queue_settlements(t.app.now()).await.unwrap(), 1);
    tamper(format!(
        "UPDATE settlements SET sequence = 0, state = 'PENDING', tx_hash = NULL, next_attempt_ms = 0, attempts = 0 WHERE session_id = '{second_id}'"
    ));
    for _ in 0..3 {
        pass(&t.app, &settler, &config, t.app.now() + 480_000)
            .await
            .unwrap();
    }
    let second = t
        .get(format!("/settlements/{second_id}"), twice.auth())
        .await
        .ok();
    assert_eq!(second.data()["state"], "FAILED", "{}", second.data());
    assert!(
        second.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("AlreadySettled")
    );
    // 4. A settlement the contract has but whose record was lost (a restore
    // from an older backup): the Settled event makes it CONFIRMED again,
    // with no second payment.
    let paid = d.usdc_of(evm_of(&supplier)).await;
    tamper(format!(
        "UPDATE settlements SET state = 'PENDING', tx_hash = NULL, block = NULL, next_attempt_ms = 0 WHERE session_id = '{first_id}'"
    ));
    pass(&t.app, &settler, &config, t.app.now() + 600_000)
        .await
        .unwrap();
    let first = t
        .get(format!("/settlements/{first_id}"), twice.auth())
        .await
        .ok();
    assert_eq!(first.data()["state"], "CONFIRMED", "{}", first.data());
    assert!(first.data()["txHash"].as_str().unwrap().starts_with("0x"));
    assert_eq!(
        d.usdc_of(evm_of(&supplier)).await,
        paid,
        "no second payment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relayer_key_comes_from_an_encrypted_keystore_and_a_wrong_password_is_named() {
    let d = deployed().await;
    let dir = tempfile::tempdir().unwrap();
    PrivateKeySigner::encrypt_keystore(
        dir.path(),
        &mut rand::thread_rng(),
        d.relayer.to_bytes(),
        "correct horse",
        Some("relayer.json"),
    )
    .unwrap();
    let var = format!("LX_TEST_RELAYER_PASSWORD_{}", std::process::id());
    let mut config = lx_server::config::Config::defaults();
    config.chain.rpc_url = d.anvil.url.clone();
    config.chain.settlement_address = d.settlement.to_string();
    config.chain.relayer_keystore = dir.path().join("relayer.json").display().to_string();
    config.chain.relayer_password_env = var.clone();

    let env = |password: Option<&'static str>| {
        let var = var.clone();
        move |name: &str| {
            (name == var)
                .then_some(password)
                .flatten()
                .map(str::to_owned)
        }
    };
    let missing = lx_server::serve::settler_with(&config, env(None))
        .await
        .err()
        .expect("no password");
    assert!(format!("{missing:#}").contains(&var), "{missing:#}");
    let wrong = lx_server::serve::settler_with(&config, env(Some("wrong")))
        .await
        .err()
        .expect("a wrong password");
    assert!(format!("{wrong:#}").contains("relayer.json"), "{wrong:#}");
    let settler = lx_server::serve::settler_with(&config, env(Some("correct horse")))
        .await
        .unwrap()
        .expect("a settler");
    assert_eq!(
        settler.relayer(),
        lx_protocol::wallet::Address(d.relayer.address().0.0)
    );
}
