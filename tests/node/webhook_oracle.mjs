// The JavaScript side of tests/core/test_webhooks.py: real JSON.parse, JSON.stringify and
// node:crypto HMAC-SHA256, answering one JSON request per stdin line with one JSON line.
//
// Requests:
//   {"op": "sign", "secret": s, "timestamp": t, "json": text}    body = JSON.parse(text)
//   {"op": "sign", "secret": s, "timestamp": t, "expr": js}      body = (js), evaluated
//   {"op": "sign_raw", "secret": s, "timestamp": t, "raw": text} signs t + "." + text as is
//   {"op": "stringify", "texts": [text, ...]}                    JSON.stringify(JSON.parse(text))
// Answers: sign -> {body, data, signature} (data is null when the body has no "data" field, and
// then the signature covers the body text); sign_raw -> {signature};
// stringify -> {outs: [...]}; any failure -> {error}.
import { createHmac } from "node:crypto";
import { createInterface } from "node:readline";

const hmac = (secret, message) => createHmac("sha256", secret).update(message, "utf8").digest("hex");

function handle(request) {
  switch (request.op) {
    case "sign": {
      const body = "expr" in request ? new Function(`return (${request.expr});`)() : JSON.parse(request.json);
      const bodyText = JSON.stringify(body);
      const hasData = Object.prototype.hasOwnProperty.call(body, "data");
      const dataText = hasData ? JSON.stringify(body.data) : null;
      const signed = `${request.timestamp}.${hasData ? dataText : bodyText}`;
      return { body: bodyText, data: dataText, signature: hmac(request.secret, signed) };
    }
    case "sign_raw":
      return { signature: hmac(request.secret, `${request.timestamp}.${request.raw}`) };
    case "stringify":
      return { outs: request.texts.map((text) => JSON.stringify(JSON.parse(text))) };
    default:
      throw new Error(`unknown op ${request.op}`);
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line) continue;
  let answer;
  try {
    answer = handle(JSON.parse(line));
  } catch (error) {
    answer = { error: String(error && error.stack ? error.stack : error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
