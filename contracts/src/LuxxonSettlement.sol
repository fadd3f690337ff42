// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

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
contract LuxxonSettlement is Ownable, Pausable {
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

    uint256 public constant MAX_BATCH = 100;

    IERC20 public immutable usdc;
    address public relayer;
    address public platformWallet;
    mapping(address consumer => uint256) public deposits;
    /// The consumer's own cap on the rate; zero: none set.
    mapping(address consumer => uint256) public maxRatePerSecond;
    /// The last settled sequence of each consumer.
    mapping(address consumer => uint64) public lastSequence;

    event Deposited(address indexed consumer, uint256 amount);
    event Withdrawn(address indexed consumer, uint256 amount);
    event Settled(
        bytes32 indexed sessionId,
        address indexed from,
        address indexed to,
        uint256 toAmount,
        uint256 feeAmount,
        uint256 ratePerSecond,
        uint256 chargeableSeconds,
        uint64 sequence
    );
    event MaxRateSet(address indexed consumer, uint256 maxRatePerSecond);
    event RelayerSet(address indexed relayer);
    event PlatformWalletSet(address indexed platformWallet);

    error ZeroAmount();
    error ZeroAddress();
    error NotRelayer(address caller);
    error InsufficientDeposit(address consumer, uint256 available, uint256 needed);
    error AlreadySettled(bytes32 sessionId, uint64 sequence, uint64 lastSequence);
    error OverCharge(bytes32 sessionId, uint256 charged, uint256 allowed);
    error RateAboveMax(bytes32 sessionId, uint256 ratePerSecond, uint256 maxRatePerSecond);
    error MaxRateAlreadySet(address consumer, uint256 maxRatePerSecond);
    error BatchSize(uint256 size);

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

    /// Moves `amount` of the caller's USDC into its pool (approve first).
    function deposit(uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        deposits[msg.sender] += amount;
        usdc.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(msg.sender, amount);
    }

    /// Takes `amount` back out of the caller's pool. Works while paused.
    function withdraw(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 available = deposits[msg.sender];
        if (available < amount) revert InsufficientDeposit(msg.sender, available, amount);
        deposits[msg.sender] = available - amount;
        usdc.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// Caps the rate any settlement from the caller's pool may use. Once.
    function setMaxRatePerSecond(uint256 rate) external {
        if (rate == 0) revert ZeroAmount();
        uint256 current = maxRatePerSecond[msg.sender];
        if (current != 0) revert MaxRateAlreadySet(msg.sender, current);
        maxRatePerSecond[msg.sender] = rate;
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
        if (feeAmount > 0) usdc.safeTransfer(platformWallet, feeAmount);
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
        if (fees > 0) usdc.safeTransfer(platformWallet, fees);
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
        uint64 last = lastSequence[from];
        if (sequence <= last) revert AlreadySettled(sessionId, sequence, last);
        uint256 cap = maxRatePerSecond[from];
        if (cap != 0 && ratePerSecond > cap) revert RateAboveMax(sessionId, ratePerSecond, cap);
        uint256 charged = toAmount + feeAmount;
        uint256 allowed = ratePerSecond * chargeableSeconds;
        if (charged > allowed) revert OverCharge(sessionId, charged, allowed);
        uint256 available = deposits[from];
        if (available < charged) revert InsufficientDeposit(from, available, charged);
        lastSequence[from] = sequence;
        deposits[from] = available - charged;
        if (toAmount > 0) usdc.safeTransfer(to, toAmount);
        emit Settled(sessionId, from, to, toAmount, feeAmount, ratePerSecond, chargeableSeconds, sequence);
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

    function pause() external onlyOwner {
        _pause();
    }

    function unpause() external onlyOwner {
        _unpause();
    }
}
