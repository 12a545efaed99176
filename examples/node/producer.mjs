// Enqueue Conveyor jobs from Node.js (docs/wire-format.md).
//
//   npm ci && node producer.mjs Ann 3
//
// protobufjs loads the same .proto the Python worker was built from, checks and
// encodes the message, and the admin's HTTP API (POST /api/jobs) stores it: as the
// protobuf binary encoding (base64), exactly the bytes a Python producer would store.
// The job's type is the message's full name; a Python worker with a handler for it
// runs it. CONVEYOR_ADMIN_URL says where the admin is (default http://127.0.0.1:8000);
// CONVEYOR_ADMIN_USERNAME and CONVEYOR_ADMIN_PASSWORD, if set, are its basic auth.

import { fileURLToPath } from "node:url";
import path from "node:path";
import protobuf from "protobufjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const proto = process.env.PROTO ?? path.join(here, "..", "..", "protos", "examples", "basic.proto");
const admin = (process.env.CONVEYOR_ADMIN_URL ?? "http://127.0.0.1:8000").replace(/\/$/, "");

export async function enqueue(typeName, fields, options = {}) {
  const root = await protobuf.load(proto);
  const type = root.lookupType(typeName);
  const problem = type.verify(fields);
  if (problem) throw new Error(`${typeName}: ${problem}`);
  const bytes = type.encode(type.create(fields)).finish();
  const headers = { "content-type": "application/json" };
  const { CONVEYOR_ADMIN_USERNAME: user, CONVEYOR_ADMIN_PASSWORD: password } = process.env;
  if (user && password) {
    headers.authorization = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");
  }
  const response = await fetch(`${admin}/api/jobs`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      type: typeName,
      payload_base64: Buffer.from(bytes).toString("base64"),
      ...options, // queue, delay_seconds, max_attempts, priority, timeout_seconds
    }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`enqueue failed (${response.status}): ${body.detail}`);
  return body;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [name = "from node", count = "1"] = process.argv.slice(2);
  const job = await enqueue("conveyor.examples.BasicJob", { name, count: Number(count) });
  console.log(job.id);
}
