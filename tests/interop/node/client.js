// An independent client of vault-service: Node.js, @grpc/grpc-js and @grpc/proto-loader reading
// the .proto at run time (no generated code shared with the Python side). Runs the main flows and
// the error paths against a running server and prints one JSON line per check:
//   {"check": "...", "ok": true|false, "detail": ...}
// then a summary line {"summary": {"passed": n, "failed": m}}; exits 1 if any check failed.
//
// Environment: VAULT_ADDR (host:port), APP_TOKEN, CLINIC_TOKEN, PROTO (path of vault.proto),
// TAMPERED_RECORD (a record whose ciphertext the test changed: must give DATA_LOSS).
'use strict';

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};

const definition = protoLoader.loadSync(env('PROTO'), {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});
const Vault = grpc.loadPackageDefinition(definition).vault.v1.Vault;
const client = new Vault(env('VAULT_ADDR'), grpc.credentials.createInsecure());

function auth(token) {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}
const APP = auth(env('APP_TOKEN'));
const CLINIC = auth(env('CLINIC_TOKEN'));
const deadline = () => ({ deadline: Date.now() + 20000 });

function unary(method, request, md) {
  return new Promise((resolve) => {
    client[method](request, md, deadline(), (err, response) => {
      if (err) {
        const cid = err.metadata ? err.metadata.get('x-correlation-id')[0] : undefined;
        resolve({ err: { code: grpc.status[err.code], details: err.details, correlationId: cid } });
      } else resolve({ response });
    });
  });
}

function serverStream(method, request, md) {
  return new Promise((resolve) => {
    const items = [];
    const call = client[method](request, md, deadline());
    call.on('data', (m) => items.push(m));
    call.on('error', (err) => resolve({ items, err: { code: grpc.status[err.code], details: err.details } }));
    call.on('end', () => resolve({ items }));
  });
}

function upload(messages, md) {
  return new Promise((resolve) => {
    const call = client.UploadRecord(md, deadline(), (err, response) => {
      if (err) resolve({ err: { code: grpc.status[err.code], details: err.details } });
      else resolve({ response });
    });
    for (const m of messages) call.write(m);
    call.end();
  });
}

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) passed += 1;
  else failed += 1;
  console.log(JSON.stringify({ check: name, ok: Boolean(ok), detail: detail === undefined ? null : detail }));
}
const code = (r) => (r.err ? r.err.code : 'OK');

async function main() {
  const subject = `node-member-${process.pid}`;
  const text = 'Seoul, rhinoplasty — 상담 내용 ✓'; // non-ASCII must survive both ways
  const photo = Buffer.alloc(300000);
  for (let i = 0; i < photo.length; i += 1) photo[i] = (i * 7919) % 251;

  // --- main flows -------------------------------------------------------------------------
  let r = await unary('PutRecord', { subject_id: subject, category: 'concern_text', fields: { text, budget: '3000000' }, idempotency_key: 'node-1' }, APP);
  check('put record', code(r) === 'OK' && r.response.version === 1, r.err || r.response);
  const rid = r.response && r.response.record_id;
  r = await unary('PutRecord', { subject_id: subject, category: 'concern_text', fields: { text, budget: '3000000' }, idempotency_key: 'node-1' }, APP);
  check('idempotent retry returns the first record', code(r) === 'OK' && r.response.record_id === rid, r.err || r.response);
  r = await unary('GetRecord', { record_id: rid, purpose: 'matching' }, APP);
  check('get record: fields round-trip (UTF-8)', code(r) === 'OK' && r.response.fields.text === text && r.response.metadata.version === 1, r.err || r.response.fields);
  r = await unary('GetRecord', { record_id: rid, purpose: 'matching', fields: ['budget'] }, APP);
  check('get record: only the fields asked for', code(r) === 'OK' && Object.keys(r.response.fields).join() === 'budget', r.err || r.response.fields);
  r = await unary('UpdateRecord', { record_id: rid, fields: { text: 'updated', budget: '1' }, expected_version: 1 }, APP);
  check('update record', code(r) === 'OK' && r.response.version === 2, r.err || r.response);
  r = await unary('UpdateRecord', { record_id: rid, fields: { text: 'stale' }, expected_version: 1 }, APP);
  check('update with a stale version: FAILED_PRECONDITION', code(r) === 'FAILED_PRECONDITION', r.err);
  r = await unary('PutRecord', { subject_id: subject, category: 'concern_photo', fields: { caption: 'front' }, content: photo, content_type: 'image/png' }, APP);
  check('put record with content', code(r) === 'OK', r.err);
  const photoId = r.response && r.response.record_id;
  let s = await serverStream('DownloadContent', { record_id: photoId, purpose: 'matching' }, APP);
  const downloaded = Buffer.concat(s.items.map((p) => p.data));
  check('download content (server stream)', !s.err && downloaded.equals(photo), s.err || downloaded.length);
  s = await serverStream('DownloadContent', { record_id: photoId, purpose: 'matching', offset: 1000, length: 5000 }, APP);
  const range = Buffer.concat(s.items.map((p) => p.data));
  check('download a byte range', !s.err && range.equals(photo.subarray(1000, 6000)), s.err || range.length);
  r = await upload([
    { header: { subject_id: subject, category: 'concern_photo', fields: { caption: 'side' }, content_type: 'image/png' } },
    { data: photo.subarray(0, 100000) },
    { data: photo.subarray(100000) },
    { end: true },
  ], APP);
  check('upload record (client stream)', code(r) === 'OK', r.err || r.response);
  const uploadedId = r.response && r.response.record_id;
  r = await unary('GetRecord', { record_id: uploadedId, purpose: 'matching', include_content: true }, APP);
  check('uploaded content reads back', code(r) === 'OK' && Buffer.from(r.response.content).equals(photo), r.err);
  r = await upload([{ header: { subject_id: subject, category: 'concern_photo', fields: { caption: 'x' } } }, { data: photo.subarray(0, 10) }], APP);
  check('upload without its end message: nothing stored (INVALID_ARGUMENT)', code(r) === 'INVALID_ARGUMENT', r.err);
  r = await unary('ListRecords', { subject_id: subject }, APP);
  check('list records', code(r) === 'OK' && r.response.records.length === 3, r.err || r.response.records.length);
  r = await unary('GrantConsent', { subject_id: subject, purpose: 'clinic_proposal', grantee_principal: 'clinic', scopes: [{ category: 'concern_text' }], evidence_reference: 'node-consent' }, APP);
  check('grant consent', code(r) === 'OK' && r.response.grant_id, r.err);
  r = await unary('CreateShare', { subject_id: subject, recipient: 'clinic', purpose: 'clinic_proposal', record_ids: [rid], fields: ['text'], expires_at: Date.now() / 1000 + 3600 }, APP);
  check('create share', code(r) === 'OK' && r.response.share_id, r.err);
  const shareId = r.response && r.response.share_id;
  s = await serverStream('ReadShare', { share_id: shareId }, CLINIC);
  const rec = s.items.length && s.items[0].record;
  check('clinic reads the share: only the shared field', !s.err && rec && rec.fields.text === 'updated' && rec.fields.budget === undefined, s.err || s.items);
  s = await serverStream('ReadShare', { share_id: shareId }, APP);
  check('the application cannot read a share: PERMISSION_DENIED', s.err && s.err.code === 'PERMISSION_DENIED', s.err);
  r = await unary('RevokeShare', { share_id: shareId }, APP);
  check('revoke share', code(r) === 'OK', r.err);
  s = await serverStream('ReadShare', { share_id: shareId }, CLINIC);
  check('revoked share: PERMISSION_DENIED', s.err && s.err.code === 'PERMISSION_DENIED', s.err);

  // --- error paths --------------------------------------------------------------------------
  r = await unary('GetRecord', { record_id: rid, purpose: 'matching' }, new grpc.Metadata());
  check('no token: UNAUTHENTICATED', code(r) === 'UNAUTHENTICATED', r.err);
  r = await unary('GetRecord', { record_id: rid, purpose: 'matching' }, auth('not-a-token'));
  check('wrong token: UNAUTHENTICATED', code(r) === 'UNAUTHENTICATED', r.err);
  r = await unary('GetRecord', { record_id: 'not-an-id', purpose: 'matching' }, APP);
  check('malformed record id: INVALID_ARGUMENT', code(r) === 'INVALID_ARGUMENT', r.err);
  r = await unary('GetRecord', { record_id: rid, purpose: 'no-such-purpose' }, APP);
  check('unknown purpose: INVALID_ARGUMENT', code(r) === 'INVALID_ARGUMENT', r.err);
  r = await unary('GetRecord', { record_id: rid, purpose: 'subject_access' }, APP);
  check('purpose not allowed for the role: PERMISSION_DENIED', code(r) === 'PERMISSION_DENIED', r.err);
  r = await unary('PutRecord', { subject_id: subject, category: 'concern_text', fields: { text: 'different' }, idempotency_key: 'node-1' }, APP);
  check('idempotency key reused for another request: ALREADY_EXISTS', code(r) === 'ALREADY_EXISTS', r.err);
  r = await unary('PutRecord', { subject_id: subject, category: 'concern_text', fields: { nope: 'x' } }, APP);
  check('undeclared field: INVALID_ARGUMENT', code(r) === 'INVALID_ARGUMENT', r.err);
  r = await unary('PutRecord', { subject_id: subject, category: 'concern_photo', fields: {}, content: Buffer.alloc(9 * 1024 * 1024) }, APP);
  check('message over the size limit: RESOURCE_EXHAUSTED', code(r) === 'RESOURCE_EXHAUSTED', r.err);
  r = await unary('GetRecord', { record_id: env('TAMPERED_RECORD'), purpose: 'matching' }, APP);
  check('tampered ciphertext: DATA_LOSS with a correlation id', code(r) === 'DATA_LOSS' && Boolean(r.err.correlationId), r.err);
  r = await unary('DeleteRecord', { record_id: photoId }, APP);
  check('delete record', code(r) === 'OK', r.err);
  r = await unary('GetRecord', { record_id: photoId, purpose: 'matching' }, APP);
  check('deleted record: NOT_FOUND', code(r) === 'NOT_FOUND', r.err);
  r = await unary('EraseSubject', { subject_id: subject }, APP);
  check('erase subject', code(r) === 'OK' && r.response.erased === true, r.err || r.response);
  r = await unary('GetRecord', { record_id: rid, purpose: 'matching' }, APP);
  check('erased subject: NOT_FOUND', code(r) === 'NOT_FOUND', r.err);
  r = await unary('PutRecord', { subject_id: subject, category: 'concern_text', fields: { text: 'back?' } }, APP);
  check('writing to an erased subject: FAILED_PRECONDITION', code(r) === 'FAILED_PRECONDITION', r.err);

  console.log(JSON.stringify({ summary: { passed, failed }, keep: { record: rid } }));
  client.close();
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(JSON.stringify({ check: 'client crashed', ok: false, detail: String(e && e.stack) }));
  process.exit(2);
});
