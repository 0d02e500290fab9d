// SPDX-License-Identifier: Apache-2.0
// A "token" whose every call reverts, for tests of the failure path: a transaction sent to it
// is mined with status 0 and still pays its fee, so the authorization it carried must be voided.
pragma solidity ^0.8.20;

contract Reverter {
    error AlwaysReverts();

    function transfer(address, uint256) external pure returns (bool) {
        revert("Reverter: transfer always reverts");
    }

    function approve(address, uint256) external pure returns (bool) {
        revert("Reverter: approve always reverts");
    }

    function balanceOf(address) external pure returns (uint256) {
        return 0;
    }

    receive() external payable {
        revert AlwaysReverts();
    }

    fallback() external {
        revert AlwaysReverts();
    }
}
