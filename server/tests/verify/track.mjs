// Checks a session's track with viem, an EIP-712 implementation that is not
// ours: reads {domain, points} (GET /config's telemetryDomain and GET
// /sessions/{id}/telemetry's data) on stdin and prints, for each point, the
// address viem recovers from its signature over its signed message.
//
//   node track.mjs < {domain, points}
//
// LX_VIEM: the viem package folder; `cargo xtask test` sets it.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { recoverTypedDataAddress } = require(process.env.LX_VIEM);

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { domain, points } = JSON.parse(Buffer.concat(chunks).toString());

const types = {
  Telemetry: [
    { name: 'sessionId', type: 'bytes16' },
    { name: 'sequence', type: 'uint64' },
    { name: 'capturedAtMs', type: 'uint64' },
    { name: 'latE7', type: 'int32' },
    { name: 'lngE7', type: 'int32' },
    { name: 'accuracyCm', type: 'uint32' },
    { name: 'source', type: 'uint8' },
  ],
};

const recovered = [];
for (const p of points) {
  const m = p.signed;
  recovered.push(await recoverTypedDataAddress({
    domain: { name: domain.name, version: domain.version, chainId: BigInt(domain.chainId) },
    types,
    primaryType: 'Telemetry',
    message: {
      sessionId: m.sessionId,
      sequence: BigInt(m.sequence),
      capturedAtMs: BigInt(m.capturedAtMs),
      latE7: m.latE7,
      lngE7: m.lngE7,
      accuracyCm: m.accuracyCm,
      source: m.source,
    },
    signature: p.signature,
  }));
}
console.log(JSON.stringify({ recovered }));
