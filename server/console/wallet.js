// Sign-in with a browser wallet (EIP-4361 over EIP-1193): the wallet names
// its account, the server issues a one-time message, the wallet signs it
// with personal_sign (EIP-191) and the server answers with the `lx_session`
// cookie. The private key never leaves the wallet.

import { ApiError, post } from './api.js';

// The injected EIP-1193 provider, if a wallet extension is installed.
export function provider() {
  return typeof window.ethereum === 'object' && window.ethereum !== null
    && typeof window.ethereum.request === 'function' ? window.ethereum : null;
}

// personal_sign takes the message as 0x-prefixed hex of its UTF-8 bytes.
function utf8Hex(text) {
  const bytes = new TextEncoder().encode(text);
  let hex = '0x';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return hex;
}

// EIP-1193 errors carry a numeric code; 4001 is the user saying no.
function walletError(err, step) {
  if (err && err.code === 4001) {
    return new ApiError(0, 'WALLET_REJECTED', `the wallet request was rejected (${step})`, '');
  }
  const message = (err && err.message) || String(err);
  return new ApiError(0, 'WALLET_ERROR', `${step}: ${message}`, '');
}

// Resolves to the login answer {walletAddress, workspaceId, workspaces, expiresAt}.
export async function signIn() {
  const eth = provider();
  if (!eth) {
    throw new ApiError(0, 'NO_WALLET',
      'No browser wallet found. Install an Ethereum wallet extension (any EIP-1193 wallet, '
      + 'e.g. MetaMask or Rabby) and reload this page.', '');
  }
  let accounts;
  try {
    accounts = await eth.request({ method: 'eth_requestAccounts' });
  } catch (err) {
    throw walletError(err, 'eth_requestAccounts');
  }
  const walletAddress = Array.isArray(accounts) ? accounts[0] : undefined;
  if (typeof walletAddress !== 'string') {
    throw new ApiError(0, 'WALLET_ERROR', 'the wallet returned no account', '');
  }
  const challenge = await post('/auth/wallet/challenge', { walletAddress });
  let signature;
  try {
    signature = await eth.request({
      method: 'personal_sign',
      params: [utf8Hex(challenge.message), walletAddress],
    });
  } catch (err) {
    throw walletError(err, 'personal_sign');
  }
  return post('/auth/wallet/login', { walletAddress, nonce: challenge.nonce, signature });
}
