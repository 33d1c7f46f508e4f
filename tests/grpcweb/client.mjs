// A gRPC-Web client of gridcase, as a web or mini-program client would be:
// Buf's Connect for Node.js with its gRPC-Web transport over HTTP/1.1, the
// messages read at run time from gridcase's descriptor set (no generated
// code). It walks the intake and query listeners and prints what it saw as
// one JSON document; the Rust test judges it.
//
//   node client.mjs DESCRIPTOR_SET INTAKE_URL QUERY_URL TOKEN CASE_ID PHOTO_FILE
import { readFileSync } from "node:fs";
import { createHash, randomUUID } from "node:crypto";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";

const [descriptorFile, intakeUrl, queryUrl, token, caseId, photoFile] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorFile)));
const transport = (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" });
const intake = createClient(registry.getService("gridcase.intake.v1.IntakeService"), transport(intakeUrl));
const cases = createClient(registry.getService("gridcase.cases.v1.CaseService"), transport(intakeUrl));
const query = createClient(registry.getService("gridcase.query.v1.QueryService"), transport(queryUrl));
const options = { headers: { authorization: `Bearer ${token}` } };
const seen = [];
// Progress on stderr: which call a failure came from.
const step = (name) => console.error(`grpc-web client: ${name}`);

function refusal(error) {
  if (!(error instanceof ConnectError)) throw error;
  return { code: error.code, message: error.rawMessage, details: error.details.map((d) => d.desc?.typeName ?? d.type) };
}

// A filing, and its retry.
const now = BigInt(Math.floor(Date.now() / 1000));
const filing = {
  caseId,
  gridCode: "990101001001001",
  categoryCode: "0201",
  description: "网页端上报：路灯不亮",
  location: { latitude: 30.2741, longitude: 120.1551, address: "东门路12号" },
  reportedAt: { seconds: now - 60n, nanos: 0 },
};
step("file");
const filed = await intake.fileCase(filing, options);
step("file again");
const again = await intake.fileCase(filing, options);
seen.push({ step: "file", caseId: filed.caseId, sequence: String(filed.streamSequence), replayed: filed.replayed });
seen.push({ step: "file again", sequence: String(again.streamSequence), replayed: again.replayed });

// Bad input: the status and its details come through the trailers.
try {
  await intake.fileCase({ ...filing, caseId: randomUUID(), gridCode: "12", categoryCode: "x" }, options);
  seen.push({ step: "bad filing", accepted: true });
} catch (error) {
  seen.push({ step: "bad filing", ...refusal(error) });
}
// No token. (The calls after it go over the same HTTP/1.1 connection: a
// refusal must leave it usable.)
try {
  await intake.fileCase(filing);
  seen.push({ step: "no token", accepted: true });
} catch (error) {
  seen.push({ step: "no token", ...refusal(error) });
}

// A photo in parts (unary calls: gRPC-Web has no client streams).
const photo = readFileSync(photoFile);
const sha256 = createHash("sha256").update(photo).digest("hex");
step("upload");
let status = await intake.startUpload(
  { contentType: "image/jpeg", size: BigInt(photo.length), sha256, fileName: "web.jpg" },
  options,
);
const part = 64 * 1024;
while (!status.attachment) {
  const offset = Number(status.received);
  status = await intake.putUploadPart(
    { uploadId: status.uploadId, offset: BigInt(offset), content: photo.subarray(offset, offset + part) },
    options,
  );
}
seen.push({ step: "upload", sha256: status.attachment.sha256, size: String(status.attachment.size) });

// A note with the photo, then the photo back as a server stream.
step("note");
const noted = await cases.addProgress(
  {
    context: { caseId, commandId: "web-note-1" },
    note: "网页端补充照片",
    attachments: [status.attachment],
  },
  options,
);
seen.push({ step: "note", eventType: noted.eventType, version: String(noted.version) });
step("download");
let bytes = 0;
let parts = 0;
for await (const message of cases.getAttachment({ caseId, sha256 }, options)) {
  parts += 1;
  if (message.part.case === "chunk") bytes += message.part.value.length;
}
seen.push({ step: "download", parts, bytes });

// The query listener: the worker's own world.
step("my cases");
const mine = await query.listMyCases({}, options);
seen.push({ step: "my cases", caseIds: mine.cases.map((c) => c.caseId), cursor: mine.cursor });

console.log(JSON.stringify(seen));
