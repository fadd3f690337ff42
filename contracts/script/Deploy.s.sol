// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {LuxxonSettlement} from "../src/LuxxonSettlement.sol";
import {TestUsdc} from "../src/TestUsdc.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

interface ScriptVm {
    function startBroadcast() external;
    function stopBroadcast() external;
    function envOr(string calldata name, address defaultValue) external view returns (address);
    function envAddress(string calldata name) external view returns (address);
    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256);
}

/// Deploys the settlement contract (and a test USDC when `LX_USDC` is not
/// set), owned by the broadcasting key:
///
///     LX_RELAYER=0x… LX_PLATFORM_WALLET=0x… [LX_USDC=0x…] \
///     [LX_WITHDRAWAL_NOTICE_SECONDS=86400] [LX_ADMIN_DELAY_SECONDS=172800] \
///       forge script script/Deploy.s.sol --rpc-url … --private-key … --broadcast
///
/// `LX_WITHDRAWAL_NOTICE_SECONDS` (default 86400, one day): how long a
/// requested withdrawal waits before `withdraw()` pays it. It must be at
/// least the longest session + the server's settle delay + the relayer's
/// margin, or a consumer can take its pool out before a running session is
/// settled. Both are immutable: a different value needs a new deployment.
/// `LX_ADMIN_DELAY_SECONDS` (default 172800, two days): how long a proposed
/// relayer or platform wallet waits before it can be applied; longer than
/// the notice, so consumers can leave before it applies.
contract Deploy {
    ScriptVm internal constant vm = ScriptVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function run() external returns (LuxxonSettlement settlement, address usdc) {
        address relayer = vm.envAddress("LX_RELAYER");
        address platform = vm.envAddress("LX_PLATFORM_WALLET");
        usdc = vm.envOr("LX_USDC", address(0));
        uint256 notice = vm.envOr("LX_WITHDRAWAL_NOTICE_SECONDS", uint256(1 days));
        uint256 delay = vm.envOr("LX_ADMIN_DELAY_SECONDS", uint256(2 days));
        require(notice <= type(uint64).max && delay <= type(uint64).max, "LX_*_SECONDS above uint64");
        vm.startBroadcast();
        if (usdc == address(0)) {
            usdc = address(new TestUsdc());
        }
        settlement = new LuxxonSettlement(IERC20(usdc), msg.sender, relayer, platform, uint64(notice), uint64(delay));
        vm.stopBroadcast();
    }
}
