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
}

/// Deploys the settlement contract (and a test USDC when `LX_USDC` is not
/// set), owned by the broadcasting key:
///
///     LX_RELAYER=0x… LX_PLATFORM_WALLET=0x… [LX_USDC=0x…] \
///       forge script script/Deploy.s.sol --rpc-url … --private-key … --broadcast
contract Deploy {
    ScriptVm internal constant vm = ScriptVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function run() external returns (LuxxonSettlement settlement, address usdc) {
        address relayer = vm.envAddress("LX_RELAYER");
        address platform = vm.envAddress("LX_PLATFORM_WALLET");
        usdc = vm.envOr("LX_USDC", address(0));
        vm.startBroadcast();
        if (usdc == address(0)) {
            usdc = address(new TestUsdc());
        }
        settlement = new LuxxonSettlement(IERC20(usdc), msg.sender, relayer, platform);
        vm.stopBroadcast();
    }
}
