// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// Per-second live video, settled from the consumer's pool.
///
/// A consumer deposits USDC into its pool and can always withdraw what is
/// left, paused or not, in two steps: `requestWithdrawal(amount)`, then,
/// once `withdrawalNotice` seconds have passed, `withdraw()`, which pays
/// `min(requested, deposit left)`. Until `withdraw()` runs the relayer still
/// settles from the whole deposit (a settle never looks at the request), so a
/// consumer cannot empty its pool under a running session: the notice must
/// cover the longest session, the settle delay and the relayer's margin.
///
/// The relayer settles an ended session from the pool: the operator gets
/// `toAmount`, the stored platform wallet `feeAmount`, and the two together
/// never exceed `ratePerSecond × chargeableSeconds`, nor a rate above the one
/// the consumer capped itself at.
///
/// Administration: ownership moves in two steps (`Ownable2Step`); the owner
/// proposes a new relayer or platform wallet, and it takes effect through
/// `applyRelayer()` / `applyPlatformWallet()` (anyone may call them) no
/// sooner than `adminDelay` seconds later, so consumers see it coming and can
/// request their withdrawals first.
///
/// Replay: each consumer's settlements carry a strictly increasing
/// `sequence` (the server assigns it when it queues the settlement), and the
/// contract keeps the last one per consumer. A second settle of the same
/// session, or of any older one, is refused. One word per consumer instead
/// of a fresh slot per session keeps a settle near 20k gas in a batch; the
/// relayer settles each consumer's queue in order.
contract LuxxonSettlement is Ownable2Step {
    using SafeERC20 for IERC20;

    struct Settlement {
        bytes32 sessionId;
        address from;
        address to;
        uint64 sequence;
        uint256 ratePerSecond;
        uint256 chargeableSeconds;
        uint256 toAmount;
        uint256 feeAmount;
    }

    /// What the contract keeps per consumer, in one storage word: a settle
    /// reads and writes one slot instead of three.
    struct Pool {
        /// The deposit left, µUSDC.
        uint128 deposit;
        /// The last settled sequence.
        uint64 lastSequence;
        /// The consumer's own cap on the rate, µUSDC/s; zero: none set.
        uint64 maxRatePerSecond;
    }

    /// A consumer's requested withdrawal. Kept apart from the Pool word: a
    /// settle never reads it.
    struct WithdrawalRequest {
        /// µUSDC; zero: no request.
        uint128 amount;
        /// The first timestamp at which `withdraw()` pays.
        uint64 availableAt;
    }

    /// An address change the owner proposed; zero `account`: none.
    struct PendingChange {
        address account;
        uint64 effectiveAt;
    }

    uint256 public constant MAX_BATCH = 100;
    /// The longest notice or admin delay the constructor takes: a value so
    /// large that `block.timestamp + notice` left uint64 would lock every
    /// deposit in for good.
    uint64 private constant MAX_DELAY = 365 days;

    IERC20 public immutable usdc;
    /// Seconds between `requestWithdrawal` and the first `withdraw()` that pays.
    uint64 public immutable withdrawalNotice;
    /// Seconds between `proposeRelayer`/`proposePlatformWallet` and the change.
    uint64 public immutable adminDelay;
    // `relayer` and the pause flag share a word: a settle reads both at once.
    address public relayer;
    bool private _paused;
    address public platformWallet;
    mapping(address consumer => Pool) private pools;
    mapping(address consumer => WithdrawalRequest) private withdrawalRequests;
    PendingChange private _pendingRelayer;
    PendingChange private _pendingPlatformWallet;

    event Deposited(address indexed consumer, uint256 amount);
    event WithdrawalRequested(address indexed consumer, uint256 amount, uint64 availableAt);
    event WithdrawalCancelled(address indexed consumer, uint256 amount);
    event Withdrawn(address indexed consumer, uint256 amount);
    event Settled(
        bytes32 indexed sessionId,
        address indexed from,
        address indexed to,
        uint256 toAmount,
        uint256 feeAmount,
        uint256 ratePerSecond,
        uint256 chargeableSeconds
    );
    event MaxRateSet(address indexed consumer, uint256 maxRatePerSecond);
    event RelayerChangeRequested(address indexed relayer, uint64 effectiveAt);
    event RelayerChangeCancelled(address indexed relayer);
    event RelayerSet(address indexed relayer);
    event PlatformWalletChangeRequested(address indexed platformWallet, uint64 effectiveAt);
    event PlatformWalletChangeCancelled(address indexed platformWallet);
    event PlatformWalletSet(address indexed platformWallet);
    event Paused(address account);
    event Unpaused(address account);

    error ZeroAmount();
    error ZeroAddress();
    error NotRelayer(address caller);
    error InsufficientDeposit(address consumer, uint256 available, uint256 needed);
    error AlreadySettled(bytes32 sessionId, uint64 sequence, uint64 lastSequence);
    error OverCharge(bytes32 sessionId, uint256 charged, uint256 allowed);
    error RateAboveMax(bytes32 sessionId, uint256 ratePerSecond, uint256 maxRatePerSecond);
    error MaxRateAlreadySet(address consumer, uint256 maxRatePerSecond);
    error BatchSize(uint256 size);
    error TooLarge(uint256 value);
    error TransferFailed();
    error NoWithdrawalRequested(address consumer);
    error WithdrawalNotYet(uint64 availableAt);
    error NoChangeRequested();
    error ChangeNotYet(uint64 effectiveAt);
    error EnforcedPause();
    error ExpectedPause();

    modifier whenNotPaused() {
        if (_paused) revert EnforcedPause();
        _;
    }

    modifier onlyRelayer() {
        if (msg.sender != relayer) revert NotRelayer(msg.sender);
        _;
    }

    /// `withdrawalNoticeSeconds_` may be zero (tests). In production it must
    /// be at least the longest session + the settle delay + the relayer's
    /// margin: a consumer who requests everything as a session starts must
    /// still be there to be charged when the relayer settles it.
    /// `adminDelaySeconds_` should be longer than the notice, so consumers
    /// can take their deposits out before a new relayer or wallet applies.
    /// Neither may exceed 365 days (`TooLarge`).
    constructor(
        IERC20 usdc_,
        address owner_,
        address relayer_,
        address platformWallet_,
        uint64 withdrawalNoticeSeconds_,
        uint64 adminDelaySeconds_
    ) Ownable(owner_) {
        if (address(usdc_) == address(0) || relayer_ == address(0) || platformWallet_ == address(0)) {
            revert ZeroAddress();
        }
        if (withdrawalNoticeSeconds_ > MAX_DELAY) revert TooLarge(withdrawalNoticeSeconds_);
        if (adminDelaySeconds_ > MAX_DELAY) revert TooLarge(adminDelaySeconds_);
        usdc = usdc_;
        withdrawalNotice = withdrawalNoticeSeconds_;
        adminDelay = adminDelaySeconds_;
        relayer = relayer_;
        platformWallet = platformWallet_;
        emit RelayerSet(relayer_);
        emit PlatformWalletSet(platformWallet_);
    }

    function deposits(address consumer) external view returns (uint256) {
        return pools[consumer].deposit;
    }

    function lastSequence(address consumer) external view returns (uint64) {
        return pools[consumer].lastSequence;
    }

    function maxRatePerSecond(address consumer) external view returns (uint256) {
        return pools[consumer].maxRatePerSecond;
    }

    /// The consumer's requested withdrawal; (0, 0) when none.
    function withdrawalRequest(address consumer) external view returns (uint256 amount, uint64 availableAt) {
        WithdrawalRequest memory request = withdrawalRequests[consumer];
        return (request.amount, request.availableAt);
    }

    /// Everything the server needs about a consumer in one call.
    /// `withdrawalRequested` is the amount as requested (what `withdraw()`
    /// will pay is its minimum with the deposit then), zero when none.
    function poolOf(address consumer)
        external
        view
        returns (
            uint256 deposit,
            uint64 lastSequence,
            uint256 maxRatePerSecond,
            uint256 withdrawalRequested,
            uint64 withdrawableAt
        )
    {
        Pool memory pool = pools[consumer];
        WithdrawalRequest memory request = withdrawalRequests[consumer];
        return (pool.deposit, pool.lastSequence, pool.maxRatePerSecond, request.amount, request.availableAt);
    }

    /// Moves `amount` of the caller's USDC into its pool (approve first).
    function deposit(uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        Pool storage pool = pools[msg.sender];
        uint256 total = uint256(pool.deposit) + amount;
        if (total > type(uint128).max) revert TooLarge(total);
        pool.deposit = uint128(total);
        usdc.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(msg.sender, amount);
    }

    /// Asks to take `amount` out of the caller's pool; `withdraw()` pays it
    /// `withdrawalNotice` seconds from now. Replaces an earlier request (its
    /// clock restarts). Until then the pool still pays settlements in full.
    /// Works while paused.
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 available = pools[msg.sender].deposit;
        if (available < amount) revert InsufficientDeposit(msg.sender, available, amount);
        uint64 availableAt = _after(withdrawalNotice);
        // amount <= deposit < 2^128.
        withdrawalRequests[msg.sender] = WithdrawalRequest(uint128(amount), availableAt);
        emit WithdrawalRequested(msg.sender, amount, availableAt);
    }

    /// Drops the caller's requested withdrawal. Works while paused.
    function cancelWithdrawal() external {
        uint256 amount = withdrawalRequests[msg.sender].amount;
        if (amount == 0) revert NoWithdrawalRequested(msg.sender);
        delete withdrawalRequests[msg.sender];
        emit WithdrawalCancelled(msg.sender, amount);
    }

    /// Pays the caller's requested withdrawal once its notice has passed:
    /// `min(requested, deposit left)`, since settlements during the notice
    /// may have lowered the pool. The request is used up either way; when
    /// nothing is left to pay it emits `Withdrawn(caller, 0)` and transfers
    /// nothing. Works while paused.
    function withdraw() external returns (uint256 paid) {
        WithdrawalRequest memory request = withdrawalRequests[msg.sender];
        if (request.amount == 0) revert NoWithdrawalRequested(msg.sender);
        if (block.timestamp < request.availableAt) revert WithdrawalNotYet(request.availableAt);
        delete withdrawalRequests[msg.sender];
        Pool storage pool = pools[msg.sender];
        uint256 available = pool.deposit;
        paid = request.amount < available ? request.amount : available;
        if (paid > 0) {
            // paid <= deposit.
            unchecked {
                pool.deposit = uint128(available - paid);
            }
            usdc.safeTransfer(msg.sender, paid);
        }
        emit Withdrawn(msg.sender, paid);
    }

    /// Caps the rate any settlement from the caller's pool may use. Once.
    function setMaxRatePerSecond(uint256 rate) external {
        if (rate == 0) revert ZeroAmount();
        if (rate > type(uint64).max) revert TooLarge(rate);
        Pool storage pool = pools[msg.sender];
        uint256 current = pool.maxRatePerSecond;
        if (current != 0) revert MaxRateAlreadySet(msg.sender, current);
        pool.maxRatePerSecond = uint64(rate);
        emit MaxRateSet(msg.sender, rate);
    }

    function settleFromPool(
        bytes32 sessionId,
        address from,
        address to,
        uint64 sequence,
        uint256 ratePerSecond,
        uint256 chargeableSeconds,
        uint256 toAmount,
        uint256 feeAmount
    ) external onlyRelayer whenNotPaused {
        _settle(sessionId, from, to, sequence, ratePerSecond, chargeableSeconds, toAmount, feeAmount);
        if (feeAmount > 0) _pay(platformWallet, feeAmount);
    }

    /// Up to MAX_BATCH settlements; all or none. The fees go out in one transfer.
    function settleBatch(Settlement[] calldata items) external onlyRelayer whenNotPaused {
        uint256 n = items.length;
        if (n == 0 || n > MAX_BATCH) revert BatchSize(n);
        uint256 fees;
        for (uint256 i; i < n; ++i) {
            Settlement calldata s = items[i];
            _settle(s.sessionId, s.from, s.to, s.sequence, s.ratePerSecond, s.chargeableSeconds, s.toAmount, s.feeAmount);
            fees += s.feeAmount;
        }
        if (fees > 0) _pay(platformWallet, fees);
    }

    function _settle(
        bytes32 sessionId,
        address from,
        address to,
        uint64 sequence,
        uint256 ratePerSecond,
        uint256 chargeableSeconds,
        uint256 toAmount,
        uint256 feeAmount
    ) private {
        if (to == address(0)) revert ZeroAddress();
        // The Pool word read once and written once, by hand: the compiler
        // copies a struct into memory to read it and writes it back field by
        // field, a read-modify-write of the same slot per field. Layout as
        // declared: deposit in bits 0-127, lastSequence 128-191,
        // maxRatePerSecond 192-255.
        Pool storage pool = pools[from];
        uint256 word;
        assembly ("memory-safe") {
            word := sload(pool.slot)
        }
        uint256 deposit_ = uint128(word);
        uint64 last = uint64(word >> 128);
        uint256 cap = word >> 192;
        if (sequence <= last) revert AlreadySettled(sessionId, sequence, last);
        if (cap != 0 && ratePerSecond > cap) revert RateAboveMax(sessionId, ratePerSecond, cap);
        uint256 charged = toAmount + feeAmount;
        uint256 allowed = ratePerSecond * chargeableSeconds;
        if (charged > allowed) revert OverCharge(sessionId, charged, allowed);
        if (deposit_ < charged) revert InsufficientDeposit(from, deposit_, charged);
        // charged <= deposit < 2^128, sequence < 2^64 and the cap is kept
        // where it was: no field spills into the next.
        unchecked {
            word = (deposit_ - charged) | (uint256(sequence) << 128) | (cap << 192);
        }
        assembly ("memory-safe") {
            sstore(pool.slot, word)
        }
        if (toAmount > 0) _pay(to, toAmount);
        emit Settled(sessionId, from, to, toAmount, feeAmount, ratePerSecond, chargeableSeconds);
    }

    // --- delayed administration -------------------------------------------

    /// Proposes `relayer_` as the relayer from `adminDelay` seconds on.
    /// Replaces an earlier proposal (its clock restarts).
    function proposeRelayer(address relayer_) external onlyOwner {
        if (relayer_ == address(0)) revert ZeroAddress();
        uint64 effectiveAt = _after(adminDelay);
        _pendingRelayer = PendingChange(relayer_, effectiveAt);
        emit RelayerChangeRequested(relayer_, effectiveAt);
    }

    /// Makes the proposed relayer the relayer once its delay has passed.
    /// Anyone may call it: it only applies what the owner proposed.
    function applyRelayer() external {
        address relayer_ = _takeDue(_pendingRelayer);
        delete _pendingRelayer;
        relayer = relayer_;
        emit RelayerSet(relayer_);
    }

    function cancelRelayerChange() external onlyOwner {
        address relayer_ = _pendingRelayer.account;
        if (relayer_ == address(0)) revert NoChangeRequested();
        delete _pendingRelayer;
        emit RelayerChangeCancelled(relayer_);
    }

    /// The proposed relayer and when it may apply; (0, 0) when none.
    function pendingRelayer() external view returns (address relayer, uint64 effectiveAt) {
        return (_pendingRelayer.account, _pendingRelayer.effectiveAt);
    }

    /// Proposes `platformWallet_` as the fee wallet from `adminDelay` seconds
    /// on. Replaces an earlier proposal (its clock restarts).
    function proposePlatformWallet(address platformWallet_) external onlyOwner {
        if (platformWallet_ == address(0)) revert ZeroAddress();
        uint64 effectiveAt = _after(adminDelay);
        _pendingPlatformWallet = PendingChange(platformWallet_, effectiveAt);
        emit PlatformWalletChangeRequested(platformWallet_, effectiveAt);
    }

    /// Makes the proposed platform wallet the fee wallet once its delay has
    /// passed. Anyone may call it.
    function applyPlatformWallet() external {
        address platformWallet_ = _takeDue(_pendingPlatformWallet);
        delete _pendingPlatformWallet;
        platformWallet = platformWallet_;
        emit PlatformWalletSet(platformWallet_);
    }

    function cancelPlatformWalletChange() external onlyOwner {
        address platformWallet_ = _pendingPlatformWallet.account;
        if (platformWallet_ == address(0)) revert NoChangeRequested();
        delete _pendingPlatformWallet;
        emit PlatformWalletChangeCancelled(platformWallet_);
    }

    /// The proposed platform wallet and when it may apply; (0, 0) when none.
    function pendingPlatformWallet() external view returns (address platformWallet, uint64 effectiveAt) {
        return (_pendingPlatformWallet.account, _pendingPlatformWallet.effectiveAt);
    }

    /// The proposed account, once its delay has passed.
    function _takeDue(PendingChange storage change) private view returns (address account) {
        PendingChange memory pending = change;
        if (pending.account == address(0)) revert NoChangeRequested();
        if (block.timestamp < pending.effectiveAt) revert ChangeNotYet(pending.effectiveAt);
        return pending.account;
    }

    /// `block.timestamp + delay` as a uint64.
    function _after(uint64 delay) private view returns (uint64) {
        uint256 at = block.timestamp + delay;
        if (at > type(uint64).max) revert TooLarge(at);
        return uint64(at);
    }

    /// `usdc.transfer(to, amount)`, which must return true. USDC returns true
    /// or reverts. Hand-encoded because the settle path pays twice and the
    /// compiler's ABI encoding and decoding of the call is most of what is
    /// left to save on it.
    function _pay(address to, uint256 amount) private {
        address token = address(usdc);
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, 0xa9059cbb00000000000000000000000000000000000000000000000000000000)
            mstore(add(ptr, 4), to)
            mstore(add(ptr, 36), amount)
            let ok := call(gas(), token, 0, ptr, 68, 0, 32)
            if iszero(and(ok, and(gt(returndatasize(), 31), eq(mload(0), 1)))) {
                if iszero(ok) {
                    returndatacopy(ptr, 0, returndatasize())
                    revert(ptr, returndatasize())
                }
                mstore(0, 0x90b8ec18)
                revert(0x1c, 4)
            }
        }
    }

    function paused() external view returns (bool) {
        return _paused;
    }

    function pause() external onlyOwner whenNotPaused {
        _paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external onlyOwner {
        if (!_paused) revert ExpectedPause();
        _paused = false;
        emit Unpaused(msg.sender);
    }
}
