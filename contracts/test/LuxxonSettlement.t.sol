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

    function setUp() public {
        usdc = new TestUsdc();
        settlement = new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM);
        fund(CONSUMER, POOL);
    }

    function fund(address who, uint256 amount) internal {
        usdc.mint(who, amount);
        vm.startPrank(who);
        usdc.approve(address(settlement), amount);
        settlement.deposit(amount);
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
        new LuxxonSettlement(usdc, address(this), address(0), PLATFORM);
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        new LuxxonSettlement(usdc, address(this), RELAYER, address(0));
    }

    function test_only_the_owner_sets_the_relayer_and_the_platform_wallet() public {
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.setRelayer(OTHER);
        vm.prank(OTHER);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, OTHER));
        settlement.setPlatformWallet(OTHER);
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        settlement.setRelayer(address(0));
        vm.expectRevert(LuxxonSettlement.ZeroAddress.selector);
        settlement.setPlatformWallet(address(0));

        vm.expectEmit(true, false, false, false, address(settlement));
        emit RelayerSet(OTHER);
        settlement.setRelayer(OTHER);
        vm.assertEq(settlement.relayer(), OTHER);
        vm.expectEmit(true, false, false, false, address(settlement));
        emit PlatformWalletSet(OTHER);
        settlement.setPlatformWallet(OTHER);
        vm.assertEq(settlement.platformWallet(), OTHER);
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

    function test_withdraw_works_while_paused() public {
        settlement.pause();
        vm.prank(CONSUMER);
        vm.expectEmit(true, false, false, true, address(settlement));
        emit Withdrawn(CONSUMER, 400_000_000);
        settlement.withdraw(400_000_000);
        vm.assertEq(settlement.deposits(CONSUMER), POOL - 400_000_000, "pool");
        vm.assertEq(usdc.balanceOf(CONSUMER), 400_000_000, "wallet");
    }

    function test_withdraw_refuses_nothing_and_more_than_the_pool() public {
        vm.startPrank(CONSUMER);
        vm.expectRevert(LuxxonSettlement.ZeroAmount.selector);
        settlement.withdraw(0);
        vm.expectRevert(abi.encodeWithSelector(LuxxonSettlement.InsufficientDeposit.selector, CONSUMER, POOL, POOL + 1));
        settlement.withdraw(POOL + 1);
        vm.stopPrank();
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
        LuxxonSettlement batched = new LuxxonSettlement(usdc, address(this), RELAYER, PLATFORM);
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
        settle(item("x", 1, 1000, clamp(b, 0, 100_000), 0, 0));
        uint256 out = clamp(w, 1, settlement.deposits(OTHER));
        vm.prank(OTHER);
        settlement.withdraw(out);
        vm.assertEq(
            usdc.balanceOf(address(settlement)),
            settlement.deposits(CONSUMER) + settlement.deposits(OTHER),
            "USDC held = sum of pools"
        );
    }

    function test_a_token_that_does_not_pay_fails_the_settle() public {
        RefusingUsdc token = new RefusingUsdc();
        settlement = new LuxxonSettlement(token, address(this), RELAYER, PLATFORM);
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
