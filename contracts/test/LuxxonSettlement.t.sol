// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {CheatTest} from "./Vm.sol";
import {LuxxonSettlement} from "../src/LuxxonSettlement.sol";
import {TestUsdc} from "../src/TestUsdc.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// A token that answers `false`, or reverts, instead of paying.
contract RefusingUsdc is TestUsdc {
    uint8 public mode; // 0 pays, 1 returns false, 2 reverts

    function setMode(uint8 mode_) external {
        mode = mode_;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (mode == 1) return false;
        if (mode == 2) revert("frozen");
        return super.transfer(to, value);
    }
}

contract LuxxonSettlementTest is CheatTest {
    TestUsdc usdc;
    LuxxonSettlement settlement;

    address constant RELAYER = address(0xAE1A);
    address constant PLATFORM = address(0xFEE);
    address constant CONSUMER = address(0xC0);
    address constant OPERATOR = address(0x0B);
    address constant OTHER = address(0xBAD);
    uint256 constant POOL = 1_000_000_000; // 1000 USDC
    uint64 constant NOTICE = 1 hours;
    uint64 constant DELAY = 2 hours;
    address constant NEW_RELAYER = address(0xAE1B);
    address constant NEW_PLATFORM = address(0xFEF);

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
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    function setUp() public {
        usdc = new TestUsdc();
        settlement = new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM, NOTICE, DELAY);
        fund(CONSUMER, POOL);
    }

    function fund(address who, uint256 amount) internal {
        fundOf(settlement, who, amount);
    }

    function fundOf(LuxxonSettlement target, address who, uint256 amount) internal {
        usdc.mint(who, amount);
        vm.startPrank(who);
        usdc.approve(address(target), amount);
        target.deposit(amount);
        vm.stopPrank();
    }

    function item(bytes32 id, uint64 seq, uint256 rate, uint256 secs, uint256 toAmount, uint256 fee)
        internal
        pure
        returns (LuxxonSettlement.Settlement memory)
    {
        return LuxxonSettlement.Settlement(id, CONSUMER, OPERATOR, seq, rate, secs, toAmount, fee);
    }

    function settle(LuxxonSettlement.Settlement memory s) internal {
        vm.prank(RELAYER);
        settlement.settleFromPool(s.sessionId, s.from, s.to, s.sequence, s.ratePerSecond, s.chargeableSeconds, s.toAmount, s.feeAmount);
    }

    // --- construction and administration ---------------------------------

    function test_the_constructor_refuses_zero_addresses() public {
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        new LuxxonSettlement(usdc, address(this), address(0), PLATFORM, NOTICE, DELAY);
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        new LuxxonSettlement(usdc, address(this), RELAYER, address(0), NOTICE, DELAY);
    }

    function test_the_constructor_refuses_a_notice_or_delay_above_a_year() public {
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.TooLarge.selector, 365 days + 1));
        new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM, 365 days + 1, DELAY);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.TooLarge.selector, type(uint64).max));
        new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM, NOTICE, type(uint64).max);
        // Zero notice and delay (tests) and a year are fine.
        LuxxonSettlement instant = new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM, 0, 0);
        new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM, 365 days, 365 days);
        fundOf(instant, OTHER, 1_000);
        vm.startPrank(OTHER);
        instant.requestWithdrawal(1_000);
        vm.assertEq(instant.withdraw(), 1_000, "a zero notice pays at once");
        vm.stopPrank();
    }

    function test_the_constructor_keeps_the_notice_and_the_delay() public view {
        vm.assertEq(uint256(settlement.withdrawalNotice()), NOTICE, "notice");
        vm.assertEq(uint256(settlement.adminDelay()), DELAY, "delay");
        vm.assertEq(settlement.owner(), address(this));
        vm.assertEq(settlement.relayer(), RELAYER);
        vm.assertEq(settlement.platformWallet(), PLATFORM);
    }

    function test_ownership_moves_only_when_the_new_owner_accepts() public {
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.transferOwnership(OTHER);

        vm.expectEmit(true, true, false, false, address(settlement));
        emit OwnershipTransferStarted(address(this), OTHER);
        settlement.transferOwnership(OTHER);
        vm.assertEq(settlement.owner(), address(this));
        vm.assertEq(settlement.pendingOwner(), OTHER);
        // Not the owner yet.
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.pause();
        // Nobody else can accept.
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, CONSUMER));
        settlement.acceptOwnership();

        vm.expectEmit(true, true, false, false, address(settlement));
        emit OwnershipTransferred(address(this), OTHER);
        vm.prank(OTHER);
        settlement.acceptOwnership();
        vm.assertEq(settlement.owner(), OTHER);
        vm.assertEq(settlement.pendingOwner(), address(0));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        settlement.pause();
        vm.prank(OTHER);
        settlement.pause();
    }

    function test_only_the_owner_proposes_and_cancels_changes() public {
        vm.startPrank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.proposeRelayer(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.proposePlatformWallet(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.cancelRelayerChange();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.cancelPlatformWalletChange();
        vm.stopPrank();
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        settlement.proposeRelayer(address(0));
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        settlement.proposePlatformWallet(address(0));
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.cancelRelayerChange();
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.cancelPlatformWalletChange();
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.applyRelayer();
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.applyPlatformWallet();
    }

    function test_a_new_relayer_takes_effect_after_the_delay() public {
        uint64 effectiveAt = uint64(block.timestamp) + DELAY;
        vm.expectEmit(true, false, false, true, address(settlement));
        emit RelayerChangeRequested(NEW_RELAYER, effectiveAt);
        settlement.proposeRelayer(NEW_RELAYER);
        (address pending, uint64 at) = settlement.pendingRelayer();
        vm.assertEq(pending, NEW_RELAYER);
        vm.assertEq(uint256(at), effectiveAt, "effectiveAt");

        // Too early, for anyone; the old relayer still settles.
        vm.warp(effectiveAt - 1);
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.ChangeNotYet.selector, effectiveAt));
        settlement.applyRelayer();
        settle(item("old", 1, 1000, 10, 9_000, 1_000));
        vm.prank(NEW_RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NotRelayer.selector, NEW_RELAYER));
        settlement.settleFromPool("new", CONSUMER, OPERATOR, 2, 1000, 10, 9_000, 1_000);

        // On time, by anyone: it only applies what the owner proposed.
        vm.warp(effectiveAt);
        vm.expectEmit(true, false, false, false, address(settlement));
        emit RelayerSet(NEW_RELAYER);
        vm.prank(OTHER);
        settlement.applyRelayer();
        vm.assertEq(settlement.relayer(), NEW_RELAYER);
        (pending, at) = settlement.pendingRelayer();
        vm.assertEq(pending, address(0));
        vm.assertEq(uint256(at), 0, "pending cleared");
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.applyRelayer();

        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NotRelayer.selector, RELAYER));
        settlement.settleFromPool("new", CONSUMER, OPERATOR, 2, 1000, 10, 9_000, 1_000);
        vm.prank(NEW_RELAYER);
        settlement.settleFromPool("new", CONSUMER, OPERATOR, 2, 1000, 10, 9_000, 1_000);
        vm.assertEq(usdc.balanceOf(OPERATOR), 18_000, "both relayers settled once each");
    }

    function test_a_new_platform_wallet_takes_effect_after_the_delay() public {
        uint64 effectiveAt = uint64(block.timestamp) + DELAY;
        vm.expectEmit(true, false, false, true, address(settlement));
        emit PlatformWalletChangeRequested(NEW_PLATFORM, effectiveAt);
        settlement.proposePlatformWallet(NEW_PLATFORM);
        (address pending, uint64 at) = settlement.pendingPlatformWallet();
        vm.assertEq(pending, NEW_PLATFORM);
        vm.assertEq(uint256(at), effectiveAt, "effectiveAt");

        vm.warp(effectiveAt - 1);
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.ChangeNotYet.selector, effectiveAt));
        settlement.applyPlatformWallet();
        settle(item("old", 1, 1000, 10, 9_000, 1_000));
        vm.assertEq(usdc.balanceOf(PLATFORM), 1_000, "fee to the old wallet");

        vm.warp(effectiveAt);
        vm.expectEmit(true, false, false, false, address(settlement));
        emit PlatformWalletSet(NEW_PLATFORM);
        vm.prank(OTHER);
        settlement.applyPlatformWallet();
        vm.assertEq(settlement.platformWallet(), NEW_PLATFORM);
        (pending, at) = settlement.pendingPlatformWallet();
        vm.assertEq(pending, address(0));
        vm.assertEq(uint256(at), 0, "pending cleared");
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.applyPlatformWallet();

        settle(item("new", 2, 1000, 10, 9_000, 1_000));
        vm.assertEq(usdc.balanceOf(PLATFORM), 1_000, "old wallet paid no more");
        vm.assertEq(usdc.balanceOf(NEW_PLATFORM), 1_000, "fee to the new wallet");
    }

    function test_a_new_proposal_replaces_the_old_and_restarts_the_clock() public {
        settlement.proposeRelayer(OTHER);
        settlement.proposePlatformWallet(OTHER);
        vm.warp(block.timestamp + DELAY - 1);
        uint64 effectiveAt = uint64(block.timestamp) + DELAY;
        settlement.proposeRelayer(NEW_RELAYER);
        settlement.proposePlatformWallet(NEW_PLATFORM);
        vm.warp(block.timestamp + 1); // the first proposals would be due now
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.ChangeNotYet.selector, effectiveAt));
        settlement.applyRelayer();
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.ChangeNotYet.selector, effectiveAt));
        settlement.applyPlatformWallet();
        vm.warp(effectiveAt);
        settlement.applyRelayer();
        settlement.applyPlatformWallet();
        vm.assertEq(settlement.relayer(), NEW_RELAYER);
        vm.assertEq(settlement.platformWallet(), NEW_PLATFORM);
    }

    function test_the_owner_cancels_a_proposed_change() public {
        settlement.proposeRelayer(NEW_RELAYER);
        settlement.proposePlatformWallet(NEW_PLATFORM);
        vm.expectEmit(true, false, false, false, address(settlement));
        emit RelayerChangeCancelled(NEW_RELAYER);
        settlement.cancelRelayerChange();
        vm.expectEmit(true, false, false, false, address(settlement));
        emit PlatformWalletChangeCancelled(NEW_PLATFORM);
        settlement.cancelPlatformWalletChange();
        vm.warp(block.timestamp + DELAY);
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.applyRelayer();
        vm.expectRevert(LuxxonSettlement.NoChangeRequested.selector);
        settlement.applyPlatformWallet();
        vm.assertEq(settlement.relayer(), RELAYER);
        vm.assertEq(settlement.platformWallet(), PLATFORM);
    }

    function test_only_the_owner_pauses() public {
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.pause();
        settlement.pause();
        vm.assertTrue(settlement.paused(), "paused");
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.unpause();
        settlement.unpause();
        vm.assertFalse(settlement.paused(), "unpaused");
    }

    // --- deposits and withdrawals -----------------------------------------

    function test_a_deposit_moves_usdc_into_the_pool() public {
        usdc.mint(OTHER, 5_000_000);
        vm.startPrank(OTHER);
        usdc.approve(address(settlement), 5_000_000);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit Deposited(OTHER, 5_000_000);
        settlement.deposit(5_000_000);
        vm.stopPrank();
        vm.assertEq(settlement.deposits(OTHER), 5_000_000, "pool");
        vm.assertEq(usdc.balanceOf(OTHER), 0, "wallet");
        vm.assertEq(usdc.balanceOf(address(settlement)), POOL + 5_000_000, "contract");
    }

    function test_a_deposit_of_nothing_or_while_paused_is_refused() public {
        vm.prank(CONSUMER);
        vm.expectRevert(LuxxonSettlement.ZeroAmount.selector);
        settlement.deposit(0);
        settlement.pause();
        usdc.mint(OTHER, 1);
        vm.startPrank(OTHER);
        usdc.approve(address(settlement), 1);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        settlement.deposit(1);
        vm.stopPrank();
    }

    function test_a_withdrawal_is_requested_then_paid_after_the_notice() public {
        uint64 availableAt = uint64(block.timestamp) + NOTICE;
        vm.expectEmit(true, false, false, true, address(settlement));
        emit WithdrawalRequested(CONSUMER, 400_000_000, availableAt);
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(400_000_000);
        (uint256 amount, uint64 at) = settlement.withdrawalRequest(CONSUMER);
        vm.assertEq(amount, 400_000_000, "requested");
        vm.assertEq(uint256(at), availableAt, "availableAt");
        vm.assertEq(settlement.deposits(CONSUMER), POOL, "nothing leaves at the request");

        vm.warp(availableAt - 1);
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.WithdrawalNotYet.selector, availableAt));
        settlement.withdraw();

        vm.warp(availableAt);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit Withdrawn(CONSUMER, 400_000_000);
        vm.prank(CONSUMER);
        uint256 paid = settlement.withdraw();
        vm.assertEq(paid, 400_000_000, "paid");
        vm.assertEq(settlement.deposits(CONSUMER), POOL - 400_000_000, "pool");
        vm.assertEq(usdc.balanceOf(CONSUMER), 400_000_000, "wallet");
        (amount, at) = settlement.withdrawalRequest(CONSUMER);
        vm.assertEq(amount, 0, "request used up");
        vm.assertEq(uint256(at), 0, "request used up");
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NoWithdrawalRequested.selector, CONSUMER));
        settlement.withdraw();
    }

    function test_withdraw_works_while_paused() public {
        settlement.pause();
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(400_000_000);
        vm.prank(CONSUMER);
        settlement.cancelWithdrawal();
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(400_000_000);
        vm.warp(block.timestamp + NOTICE);
        vm.prank(CONSUMER);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit Withdrawn(CONSUMER, 400_000_000);
        settlement.withdraw();
        vm.assertEq(settlement.deposits(CONSUMER), POOL - 400_000_000, "pool");
        vm.assertEq(usdc.balanceOf(CONSUMER), 400_000_000, "wallet");
    }

    function test_a_withdrawal_request_refuses_nothing_and_more_than_the_pool() public {
        vm.startPrank(CONSUMER);
        vm.expectRevert(LuxxonSettlement.ZeroAmount.selector);
        settlement.requestWithdrawal(0);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.InsufficientDeposit.selector, CONSUMER, POOL, POOL + 1));
        settlement.requestWithdrawal(POOL + 1);
        vm.stopPrank();
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.InsufficientDeposit.selector, OTHER, 0, 1));
        settlement.requestWithdrawal(1);
    }

    function test_withdraw_or_cancel_without_a_request_reverts() public {
        vm.startPrank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NoWithdrawalRequested.selector, CONSUMER));
        settlement.withdraw();
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NoWithdrawalRequested.selector, CONSUMER));
        settlement.cancelWithdrawal();
        vm.stopPrank();
    }

    function test_a_cancelled_withdrawal_pays_nothing() public {
        vm.startPrank(CONSUMER);
        settlement.requestWithdrawal(300_000_000);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit WithdrawalCancelled(CONSUMER, 300_000_000);
        settlement.cancelWithdrawal();
        (uint256 amount, uint64 at) = settlement.withdrawalRequest(CONSUMER);
        vm.assertEq(amount, 0, "no request");
        vm.assertEq(uint256(at), 0, "no request");
        vm.warp(block.timestamp + NOTICE);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NoWithdrawalRequested.selector, CONSUMER));
        settlement.withdraw();
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NoWithdrawalRequested.selector, CONSUMER));
        settlement.cancelWithdrawal();
        vm.stopPrank();
        vm.assertEq(settlement.deposits(CONSUMER), POOL, "pool");
    }

    function test_a_new_request_replaces_the_old_and_restarts_the_clock() public {
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(100_000_000);
        vm.warp(block.timestamp + NOTICE - 10);
        uint64 availableAt = uint64(block.timestamp) + NOTICE;
        vm.expectEmit(true, false, false, true, address(settlement));
        emit WithdrawalRequested(CONSUMER, 200_000_000, availableAt);
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(200_000_000);
        vm.warp(block.timestamp + 10); // the first request would be due now
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.WithdrawalNotYet.selector, availableAt));
        settlement.withdraw();
        vm.warp(availableAt);
        vm.prank(CONSUMER);
        vm.assertEq(settlement.withdraw(), 200_000_000, "the second request, not both");
        vm.assertEq(settlement.deposits(CONSUMER), POOL - 200_000_000, "pool");
    }

    /// The attack the notice stops: the consumer asks for everything while a
    /// session runs. The relayer still settles it from the whole deposit, and
    /// the withdrawal pays only the rest.
    function test_a_withdrawal_requested_during_a_session_cannot_dodge_its_settle() public {
        uint64 availableAt = uint64(block.timestamp) + NOTICE;
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(POOL);
        vm.warp(block.timestamp + NOTICE - 1);
        settle(item("running", 1, 1000, 3_000, 2_700_000, 300_000));
        vm.assertEq(usdc.balanceOf(OPERATOR), 2_700_000, "operator paid");
        vm.assertEq(usdc.balanceOf(PLATFORM), 300_000, "platform paid");
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.WithdrawalNotYet.selector, availableAt));
        settlement.withdraw();

        vm.warp(block.timestamp + 1);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit Withdrawn(CONSUMER, POOL - 3_000_000);
        vm.prank(CONSUMER);
        vm.assertEq(settlement.withdraw(), POOL - 3_000_000, "the rest, not the request");
        vm.assertEq(settlement.deposits(CONSUMER), 0, "pool empty");
        vm.assertEq(usdc.balanceOf(CONSUMER), POOL - 3_000_000, "wallet");
        vm.assertEq(usdc.balanceOf(address(settlement)), 0, "contract empty");
    }

    /// Settlements ate the whole pool during the notice: the request is used
    /// up and `Withdrawn(consumer, 0)` says so; nothing is transferred.
    function test_a_withdrawal_of_an_emptied_pool_pays_zero_and_clears_the_request() public {
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(POOL);
        settle(item("all", 1, POOL, 1, POOL - 100, 100));
        vm.warp(block.timestamp + NOTICE);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit Withdrawn(CONSUMER, 0);
        vm.prank(CONSUMER);
        vm.assertEq(settlement.withdraw(), 0, "nothing left");
        vm.assertEq(usdc.balanceOf(CONSUMER), 0, "wallet");
        (uint256 amount,) = settlement.withdrawalRequest(CONSUMER);
        vm.assertEq(amount, 0, "request cleared");
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NoWithdrawalRequested.selector, CONSUMER));
        settlement.withdraw();
    }

    function test_a_deposit_during_the_notice_stays_beyond_the_request() public {
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(POOL);
        fund(CONSUMER, 5_000_000);
        vm.warp(block.timestamp + NOTICE);
        vm.prank(CONSUMER);
        vm.assertEq(settlement.withdraw(), POOL, "the request");
        vm.assertEq(settlement.deposits(CONSUMER), 5_000_000, "the later deposit stays");
    }

    function test_pool_of_returns_the_five_fields() public {
        vm.prank(CONSUMER);
        settlement.setMaxRatePerSecond(2000);
        settle(item("s3", 3, 1000, 10, 9_000, 1_000));
        vm.warp(1000);
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(250_000_000);
        (uint256 deposit, uint64 sequence, uint256 cap, uint256 requested, uint64 withdrawableAt) =
            settlement.poolOf(CONSUMER);
        vm.assertEq(deposit, POOL - 10_000, "deposit");
        vm.assertEq(uint256(sequence), 3, "lastSequence");
        vm.assertEq(cap, 2000, "maxRatePerSecond");
        vm.assertEq(requested, 250_000_000, "withdrawalRequested");
        vm.assertEq(uint256(withdrawableAt), 1000 + NOTICE, "withdrawableAt");

        (deposit, sequence, cap, requested, withdrawableAt) = settlement.poolOf(OTHER);
        vm.assertEq(deposit + sequence + cap + requested + withdrawableAt, 0, "an unknown consumer is all zero");
    }

    // --- the consumer's rate cap ------------------------------------------

    function test_the_rate_cap_is_set_once_and_never_to_zero() public {
        vm.startPrank(CONSUMER);
        vm.expectRevert(LuxxonSettlement.ZeroAmount.selector);
        settlement.setMaxRatePerSecond(0);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit MaxRateSet(CONSUMER, 2000);
        settlement.setMaxRatePerSecond(2000);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.MaxRateAlreadySet.selector, CONSUMER, 2000));
        settlement.setMaxRatePerSecond(5000);
        vm.stopPrank();
        vm.assertEq(settlement.maxRatePerSecond(CONSUMER), 2000, "cap");
    }

    function test_a_settle_above_the_consumers_cap_reverts() public {
        vm.prank(CONSUMER);
        settlement.setMaxRatePerSecond(1000);
        settle(item("at-cap", 1, 1000, 10, 9000, 1000));
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.RateAboveMax.selector, bytes32("above"), 1001, 1000));
        settlement.settleFromPool("above", CONSUMER, OPERATOR, 2, 1001, 10, 9000, 1000);
    }

    // --- settlement --------------------------------------------------------

    function test_a_settle_pays_the_operator_and_the_platform_exactly() public {
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settled("s1", CONSUMER, OPERATOR, 54_000, 6_000, 1000, 60);
        settle(item("s1", 1, 1000, 60, 54_000, 6_000));
        vm.assertEq(usdc.balanceOf(OPERATOR), 54_000, "operator");
        vm.assertEq(usdc.balanceOf(PLATFORM), 6_000, "platform");
        vm.assertEq(settlement.deposits(CONSUMER), POOL - 60_000, "pool");
        vm.assertEq(uint256(settlement.lastSequence(CONSUMER)), 1, "sequence");
    }

    function test_only_the_relayer_settles() public {
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NotRelayer.selector, OTHER));
        settlement.settleFromPool("s1", CONSUMER, OPERATOR, 1, 1000, 60, 54_000, 6_000);
        LuxxonSettlement.Settlement[] memory batch = new LuxxonSettlement.Settlement[](1);
        batch[0] = item("s1", 1, 1000, 60, 54_000, 6_000);
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.NotRelayer.selector, OTHER));
        settlement.settleBatch(batch);
    }

    function test_a_settled_session_and_any_older_one_are_refused() public {
        settle(item("s5", 5, 1000, 10, 9_000, 1_000));
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.AlreadySettled.selector, bytes32("s5"), 5, 5));
        settlement.settleFromPool("s5", CONSUMER, OPERATOR, 5, 1000, 10, 9_000, 1_000);
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.AlreadySettled.selector, bytes32("s3"), 3, 5));
        settlement.settleFromPool("s3", CONSUMER, OPERATOR, 3, 1000, 10, 9_000, 1_000);
        vm.assertEq(usdc.balanceOf(OPERATOR), 9_000, "paid once");
    }

    function test_more_than_rate_times_seconds_reverts() public {
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.OverCharge.selector, bytes32("over"), 10_001, 10_000));
        settlement.settleFromPool("over", CONSUMER, OPERATOR, 1, 1000, 10, 9_001, 1_000);
    }

    function test_more_than_the_pool_reverts() public {
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.InsufficientDeposit.selector, CONSUMER, POOL, POOL + 10));
        settlement.settleFromPool("big", CONSUMER, OPERATOR, 1, POOL, 2, POOL, 10);
    }

    function test_a_settle_to_no_one_reverts() public {
        vm.prank(RELAYER);
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        settlement.settleFromPool("nobody", CONSUMER, address(0), 1, 1000, 10, 9_000, 1_000);
    }

    function test_settling_is_paused_with_the_contract() public {
        settlement.pause();
        vm.prank(RELAYER);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        settlement.settleFromPool("s1", CONSUMER, OPERATOR, 1, 1000, 10, 9_000, 1_000);
        LuxxonSettlement.Settlement[] memory batch = new LuxxonSettlement.Settlement[](1);
        batch[0] = item("s1", 1, 1000, 10, 9_000, 1_000);
        vm.prank(RELAYER);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        settlement.settleBatch(batch);
    }

    // --- batches -----------------------------------------------------------

    function test_a_batch_holds_one_to_a_hundred() public {
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.BatchSize.selector, 0));
        settlement.settleBatch(new LuxxonSettlement.Settlement[](0));
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.BatchSize.selector, 101));
        settlement.settleBatch(new LuxxonSettlement.Settlement[](101));
    }

    function test_a_batch_is_all_or_none() public {
        LuxxonSettlement.Settlement[] memory batch = new LuxxonSettlement.Settlement[](3);
        batch[0] = item("a", 1, 1000, 10, 9_000, 1_000);
        batch[1] = item("b", 2, 1000, 10, 9_000, 1_001); // over the rate
        batch[2] = item("c", 3, 1000, 10, 9_000, 1_000);
        vm.prank(RELAYER);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.OverCharge.selector, bytes32("b"), 10_001, 10_000));
        settlement.settleBatch(batch);
        vm.assertEq(usdc.balanceOf(OPERATOR), 0, "nothing paid");
        vm.assertEq(settlement.deposits(CONSUMER), POOL, "pool untouched");
        vm.assertEq(uint256(settlement.lastSequence(CONSUMER)), 0, "nothing settled");
    }

    function test_a_batch_pays_what_the_same_settles_one_by_one_pay() public {
        LuxxonSettlement single = settlement;
        LuxxonSettlement batched = new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM, NOTICE, DELAY);
        usdc.mint(CONSUMER, POOL);
        vm.startPrank(CONSUMER);
        usdc.approve(address(batched), POOL);
        batched.deposit(POOL);
        vm.stopPrank();

        LuxxonSettlement.Settlement[] memory batch = new LuxxonSettlement.Settlement[](10);
        for (uint64 i = 0; i < 10; ++i) {
            uint256 secs = 30 + i * 7;
            uint256 charged = 1000 * secs;
            uint256 fee = charged / 10;
            batch[i] = item(bytes32(uint256(i + 1)), i + 1, 1000, secs, charged - fee, fee);
        }
        for (uint256 i = 0; i < 10; ++i) {
            settle(batch[i]);
        }
        uint256 operatorAfterSingles = usdc.balanceOf(OPERATOR);
        uint256 platformAfterSingles = usdc.balanceOf(PLATFORM);
        vm.prank(RELAYER);
        batched.settleBatch(batch);
        vm.assertEq(usdc.balanceOf(OPERATOR), 2 * operatorAfterSingles, "operator paid the same twice");
        vm.assertEq(usdc.balanceOf(PLATFORM), 2 * platformAfterSingles, "platform paid the same twice");
        vm.assertEq(batched.deposits(CONSUMER), single.deposits(CONSUMER), "pools the same");
        vm.assertEq(uint256(batched.lastSequence(CONSUMER)), 10, "sequence");
    }

    // --- the bound, under fuzzing -----------------------------------------

    function testFuzz_a_settle_never_takes_more_than_rate_times_seconds(
        uint256 rate,
        uint256 secs,
        uint256 toAmount,
        uint256 feeAmount
    ) public {
        rate = clamp(rate, 0, 1_000_000);
        secs = clamp(secs, 0, 86_400);
        toAmount = clamp(toAmount, 0, 2 * rate * secs + 10);
        feeAmount = clamp(feeAmount, 0, 2 * rate * secs + 10);
        uint256 poolBefore = settlement.deposits(CONSUMER);
        uint256 allowed = rate * secs;
        bool fits = toAmount + feeAmount <= allowed && toAmount + feeAmount <= poolBefore;
        if (!fits) {
            vm.prank(RELAYER);
            vm.expectRevert();
            settlement.settleFromPool("f", CONSUMER, OPERATOR, 1, rate, secs, toAmount, feeAmount);
            vm.assertEq(settlement.deposits(CONSUMER), poolBefore, "nothing taken");
            return;
        }
        settle(item("f", 1, rate, secs, toAmount, feeAmount));
        uint256 taken = poolBefore - settlement.deposits(CONSUMER);
        vm.assertTrue(taken <= allowed, "toAmount + feeAmount <= rate x seconds");
        vm.assertEq(taken, toAmount + feeAmount, "exactly what was settled");
        vm.assertEq(usdc.balanceOf(OPERATOR), toAmount, "operator");
        vm.assertEq(usdc.balanceOf(PLATFORM), feeAmount, "platform");
    }

    function testFuzz_the_contract_always_holds_every_pool(uint256 a, uint256 b, uint256 w) public {
        fund(OTHER, clamp(a, 1, 1e12));
        uint256 out = clamp(w, 1, settlement.deposits(OTHER));
        vm.prank(OTHER);
        settlement.requestWithdrawal(out);
        vm.prank(CONSUMER);
        settlement.requestWithdrawal(POOL);
        // During the notice the relayer still settles from the whole pool.
        uint256 secs = clamp(b, 0, 100_000);
        settle(item("x", 1, 1000, secs, 1000 * secs, 0));
        vm.warp(block.timestamp + NOTICE);
        vm.prank(OTHER);
        vm.assertEq(settlement.withdraw(), out, "OTHER's request");
        vm.prank(CONSUMER);
        vm.assertEq(settlement.withdraw(), POOL - 1000 * secs, "CONSUMER's rest");
        vm.assertEq(
            usdc.balanceOf(address(settlement)),
            settlement.deposits(CONSUMER) + settlement.deposits(OTHER),
            "USDC held = sum of pools"
        );
    }

    function test_a_token_that_does_not_pay_fails_the_settle() public {
        RefusingUsdc token = new RefusingUsdc();
        settlement = new LuxxonSettlement(token, address(this), RELAYER, PLATFORM, NOTICE, DELAY);
        token.mint(CONSUMER, POOL);
        vm.startPrank(CONSUMER);
        token.approve(address(settlement), POOL);
        settlement.deposit(POOL);
        vm.stopPrank();

        token.setMode(1);
        vm.expectRevert(LuxxonSettlement.TransferFailed.selector);
        settle(item(keccak256("refused"), 1, 1000, 10, 9000, 1000));

        token.setMode(2);
        vm.expectRevert(abi.encodeWithSignature("Error(string)", "frozen"));
        settle(item(keccak256("frozen"), 1, 1000, 10, 9000, 1000));

        token.setMode(0);
        settle(item(keccak256("paid"), 1, 1000, 10, 9000, 1000));
        vm.assertEq(token.balanceOf(OPERATOR), 9000, "operator paid once the token pays");
        vm.assertEq(token.balanceOf(PLATFORM), 1000, "fee paid once the token pays");
        vm.assertEq(settlement.deposits(CONSUMER), POOL - 10000, "pool charged once");
    }
}

/// What the invariant fuzzer calls: deposits, withdrawal requests,
/// cancellations, withdrawals after a warp and settles by the relayer, for
/// three consumers, with bounded random amounts (some settles are meant to
/// revert). It records what every settle that went through took.
contract Handler is CheatTest {
    LuxxonSettlement public immutable settlement;
    TestUsdc public immutable usdc;
    address public immutable relayer;
    address public immutable platform;
    address public constant OPERATOR = address(0x0B);
    uint64 public immutable notice;

    address[3] public consumers = [address(0xC1), address(0xC2), address(0xC3)];
    mapping(address consumer => uint64) public nextSequence;

    uint256 public settles;
    uint256 public settleReverts;
    /// Sum of what went out of the pools on settles, and of rate × seconds.
    uint256 public totalCharged;
    uint256 public totalAllowed;
    /// Sum of what the operator and the platform received.
    uint256 public totalPaidOut;
    /// Set when one settle took more than its rate × seconds, or than it
    /// paid out, went through with a replayed sequence or above the
    /// consumer's cap, or left the pool's other fields or the withdrawal
    /// request other than they were; or when a withdrawal paid other than
    /// min(requested, deposit).
    bool public broken;

    constructor(LuxxonSettlement settlement_, TestUsdc usdc_, address relayer_, address platform_) {
        settlement = settlement_;
        usdc = usdc_;
        relayer = relayer_;
        platform = platform_;
        notice = settlement_.withdrawalNotice();
    }

    function consumerCount() external pure returns (uint256) {
        return 3;
    }

    function _consumer(uint256 seed) private view returns (address) {
        return consumers[seed % 3];
    }

    function deposit(uint256 who, uint256 amount) external {
        address consumer = _consumer(who);
        amount = clamp(amount, 1, 1e12);
        usdc.mint(consumer, amount);
        vm.startPrank(consumer);
        usdc.approve(address(settlement), amount);
        settlement.deposit(amount);
        vm.stopPrank();
    }

    function requestWithdrawal(uint256 who, uint256 amount) external {
        address consumer = _consumer(who);
        // Up to a little more than the pool: some requests are refused.
        amount = clamp(amount, 0, settlement.deposits(consumer) + 10);
        vm.prank(consumer);
        settlement.requestWithdrawal(amount);
    }

    function setMaxRatePerSecond(uint256 who, uint256 rate) external {
        vm.prank(_consumer(who));
        settlement.setMaxRatePerSecond(clamp(rate, 1, 1_000_000));
    }

    function cancelWithdrawal(uint256 who) external {
        vm.prank(_consumer(who));
        settlement.cancelWithdrawal();
    }

    /// Requests first when nothing is requested, so that the fuzzer often
    /// gets to the end of a notice (with settles in between).
    function withdraw(uint256 who, uint256 wait, uint256 amount) external {
        address consumer = _consumer(who);
        (uint256 pending,) = settlement.withdrawalRequest(consumer);
        uint256 available = settlement.deposits(consumer);
        if (pending == 0 && available > 0) {
            vm.prank(consumer);
            settlement.requestWithdrawal(clamp(amount, 1, available));
        }
        vm.warp(block.timestamp + clamp(wait, 0, 2 * uint256(notice)));
        (uint256 requested,) = settlement.withdrawalRequest(consumer);
        uint256 poolBefore = settlement.deposits(consumer);
        uint256 walletBefore = usdc.balanceOf(consumer);
        vm.prank(consumer);
        uint256 paid = settlement.withdraw();
        uint256 expected = requested < poolBefore ? requested : poolBefore;
        if (paid != expected || usdc.balanceOf(consumer) - walletBefore != paid) broken = true;
        if (poolBefore - settlement.deposits(consumer) != paid) broken = true;
    }

    /// `mode % 8`: 0 replays the last sequence, 1 ignores the consumer's
    /// cap; otherwise the rate stays under the cap. Both are refused.
    function settle(uint256 who, uint256 rate, uint256 secs, uint256 toAmount, uint256 feeAmount, uint8 mode)
        external
    {
        address consumer = _consumer(who);
        (uint256 poolBefore, uint64 last, uint256 cap, uint256 requested, uint64 withdrawableAt) =
            settlement.poolOf(consumer);
        rate = clamp(rate, 0, cap != 0 && mode % 8 != 1 ? cap : 1_000_000);
        secs = clamp(secs, 0, 86_400);
        // Up to a little above rate × seconds: some settles are refused.
        uint256 allowed = rate * secs;
        toAmount = clamp(toAmount, 0, allowed + 10);
        feeAmount = clamp(feeAmount, 0, allowed / 5 + 10);
        uint64 sequence = mode % 8 == 0 ? last : last + 1;

        uint256 operatorBefore = usdc.balanceOf(OPERATOR);
        uint256 platformBefore = usdc.balanceOf(platform);
        vm.prank(relayer);
        try settlement.settleFromPool(
            keccak256(abi.encode(consumer, sequence)), consumer, OPERATOR, sequence, rate, secs, toAmount, feeAmount
        ) {
            ++settles;
            (uint256 poolAfter, uint64 lastAfter, uint256 capAfter, uint256 requestedAfter, uint64 atAfter) =
                settlement.poolOf(consumer);
            uint256 charged = poolBefore - poolAfter;
            uint256 paidOut =
                (usdc.balanceOf(OPERATOR) - operatorBefore) + (usdc.balanceOf(platform) - platformBefore);
            if (charged > allowed || paidOut != charged || sequence <= last) broken = true;
            if (cap != 0 && rate > cap) broken = true;
            if (lastAfter != sequence || capAfter != cap) broken = true;
            if (requestedAfter != requested || atAfter != withdrawableAt) broken = true;
            totalCharged += charged;
            totalAllowed += allowed;
            totalPaidOut += paidOut;
        } catch {
            ++settleReverts;
        }
    }
}

/// Forge's invariant fuzzer drives `Handler` (and only it: `targetContracts`
/// is read by its selector, as forge-std would declare it) and checks these
/// after every call.
contract LuxxonSettlementInvariantTest is CheatTest {
    address constant RELAYER = address(0xAE1A);
    address constant PLATFORM = address(0xFEE);

    TestUsdc usdc;
    LuxxonSettlement settlement;
    Handler handler;

    function setUp() public {
        usdc = new TestUsdc();
        settlement = new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM, 1 hours, 2 hours);
        handler = new Handler(settlement, usdc, RELAYER, PLATFORM);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function invariant_usdc_held_equals_sum_of_pools() public view {
        uint256 sum;
        for (uint256 i; i < handler.consumerCount(); ++i) {
            sum += settlement.deposits(handler.consumers(i));
        }
        vm.assertEq(usdc.balanceOf(address(settlement)), sum, "USDC held = sum of pools");
    }

    function invariant_no_settle_above_rate_times_seconds() public view {
        vm.assertFalse(handler.broken(), "a settle took more than rate x seconds, or a replay went through");
        vm.assertLe(handler.totalCharged(), handler.totalAllowed(), "charged <= sum of rate x seconds");
        vm.assertEq(handler.totalPaidOut(), handler.totalCharged(), "paid out = charged");
    }
}
