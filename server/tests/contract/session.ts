// One session end to end through a client generated from the server's
// OpenAPI document (openapi-typescript) and openapi-fetch: quote, request,
// dispatch, start (the supplier), LIVE, end, the meter and the settlement,
// and a refusal read as the typed error envelope. `tsc --strict` checks it
// against the generated types before it runs.
//
//   node session.js <origin> <consumer key> <supplier key>

import createClient from "openapi-fetch";
import type { paths, components } from "./lx-api.js";

type SessionDto = components["schemas"]["SessionDto"];
// Node's own globals, without @types/node.
declare const process: { argv: string[]; exit(code: number): never };

const [origin, consumerKey, supplierKey] = process.argv.slice(2) as [string, string, string];
const as = (key: string) =>
  createClient<paths>({ baseUrl: origin, headers: { Authorization: `Bearer ${key}` } });
const consumer = as(consumerKey);
const supplier = as(supplierKey);

function fail(step: string, error: unknown): never {
  throw new Error(`${step}: ${JSON.stringify(error)}`);
}

async function session(id: string): Promise<SessionDto> {
  const { data, error } = await consumer.GET("/api/v1/sessions/{id}", {
    params: { path: { id } },
  });
  if (!data) fail("read the session", error);
  return data.data;
}

async function main() {
  const at = { lat: 4.711, lng: -74.072 };
  const quote = await consumer.GET("/api/v1/pricing/quote", {
    params: { query: { ...at, durationSeconds: 60 } },
  });
  if (!quote.data) fail("quote", quote.error);
  const rate: number = quote.data.data.ratePerSecondMicroUsdc;

  const created = await consumer.POST("/api/v1/sessions", {
    body: { ...at, maxDurationSeconds: 60, quoteId: quote.data.data.quoteId },
  });
  if (!created.data) fail("create", created.error);
  const id = created.data.data.id;
  const token: string | undefined = created.data.consistencyToken;

  const dispatched = await consumer.POST("/api/v1/sessions/{id}/dispatch", {
    params: { path: { id } },
  });
  if (!dispatched.data) fail("dispatch", dispatched.error);

  const started = await supplier.POST("/api/v1/sessions/{id}/start", {
    params: { path: { id } },
  });
  if (!started.data) fail("start", started.error);
  const whip: string = started.data.data.whipUrl;

  let live = await session(id);
  for (let i = 0; i < 100 && live.state !== "LIVE"; i++) {
    await new Promise((r) => setTimeout(r, 50));
    live = await session(id);
  }
  if (live.state !== "LIVE") fail("wait for LIVE", live.state);

  await new Promise((r) => setTimeout(r, 1200));
  const ended = await consumer.POST("/api/v1/sessions/{id}/end", {
    params: { path: { id } },
  });
  if (!ended.data) fail("end", ended.error);
  const meter = ended.data.data.meter;
  if (!meter) fail("meter", ended.data.data);

  const settlement = await consumer.GET("/api/v1/settlements/{sessionId}", {
    params: { path: { sessionId: id } },
  });
  if (!settlement.data) fail("settlement", settlement.error);

  // A refusal is the error envelope, typed: its code is one of the
  // document's codes for that status.
  const refused = await consumer.POST("/api/v1/sessions/{id}/end", {
    params: { path: { id } },
  });
  if (!refused.error) fail("ending twice", refused.data);
  const code: string = refused.error.code;

  console.log(
    JSON.stringify({
      id,
      rate,
      token: token !== undefined,
      whip,
      state: ended.data.data.state,
      cleanSeconds: meter.cleanSeconds,
      chargedMicroUsdc: meter.chargedMicroUsdc,
      settlement: settlement.data.data.state,
      refusal: { status: refused.response.status, code, detail: refused.error.detail },
    }),
  );
}

main().catch((e) => {
  console.error(String(e));
  process.exit(1);
});
