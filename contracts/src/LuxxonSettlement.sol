// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// Per-second live video, settled from the consumer's pool.
///
/// A consumer deposits USDC into its pool and can always withdraw what is
/// left, paused or not. The relayer settles an ended session from the pool:
/// the operator gets `toAmount`, the stored platform wallet `feeAmount`,
/// and the two together never exceed `ratePerSecond × chargeableSeconds`, nor
/// a rate above the one the consumer capped itself at.
///
/// Replay: each consumer's settlements carry a strictly increasing
/// `sequence` (the server assigns it when it queues the settlement), and the
/// contract keeps the last one per consumer. A second settle of the same
/// session, or of any older one, is refused. One word per consumer instead
/// of a fresh slot per session keeps a settle near 20k gas in a batch; the
/// relayer settles each consumer's queue in order.
contract LuxxonSettlement is Ownable {
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

    uint256 public constant MAX_BATCH = 100;

    IERC20 public immutable usdc;
    // `relayer` and the pause flag share a word: a settle reads both at once.
    address public relayer;
    bool private _paused;
    address public platformWallet;
    mapping(address consumer => Pool) private pools;

    event Deposited(address indexed consumer, uint256 amount);
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
    event RelayerSet(address indexed relayer);
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

    constructor(IERC20 usdc_, address owner_, address relayer_, address platformWallet_) Ownable(owner_) {
        if (address(usdc_) == address(0) || relayer_ == address(0) || platformWallet_ == address(0)) {
            revert ZeroAddress();
        }
        usdc = usdc_;
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

    /// Takes `amount` back out of the caller's pool. Works while paused.
    function withdraw(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Pool storage pool = pools[msg.sender];
        uint256 available = pool.deposit;
        if (available < amount) revert InsufficientDeposit(msg.sender, available, amount);
        pool.deposit = uint128(available - amount);
        usdc.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
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

    function setRelayer(address relayer_) external onlyOwner {
        if (relayer_ == address(0)) revert ZeroAddress();
        relayer = relayer_;
        emit RelayerSet(relayer_);
    }

    function setPlatformWallet(address platformWallet_) external onlyOwner {
        if (platformWallet_ == address(0)) revert ZeroAddress();
        platformWallet = platformWallet_;
        emit PlatformWalletSet(platformWallet_);
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
