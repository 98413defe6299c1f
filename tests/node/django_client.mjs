// The npm `phoenix` client (real Node) streaming through django_modelriver's relay.
//
//   node django_client.mjs <django base URL> <message> [workflow]
//
// Does what a page does: GET / for the CSRF cookie, POST /modelriver/start with it, then opens
// phoenix's Socket on the answer's websocket_url with {token: ws_token} and joins
// websocket_channel. Prints one JSON line: {answer, text, seqs, final, events} or {error}.
import { Socket } from "phoenix";
import WebSocket from "ws";

const [base, message, workflow] = process.argv.slice(2);
const origin = new URL(base).origin;

let cookies = [];

class BrowserLikeWebSocket extends WebSocket {
  // A browser sends Origin (Django's AllowedHostsOriginValidator requires it) and its cookies
  // (the relay opens a token's socket only with the session it was issued to).
  constructor(url, protocols) { super(url, protocols, { origin, headers: { Cookie: cookies.join("; ") } }); }
}

function fail(error) {
  process.stdout.write(JSON.stringify({ error: String(error) }) + "\n");
  process.exit(1);
}

const timer = setTimeout(() => fail("timed out"), 30000);

const page = await fetch(base + "/");
cookies = page.headers.getSetCookie().map((c) => c.split(";")[0]);
const csrf = cookies.find((c) => c.startsWith("csrftoken=")).slice("csrftoken=".length);
const started = await fetch(base + "/modelriver/start", {
  method: "POST",
  headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Cookie: cookies.join("; ") },
  body: JSON.stringify(workflow ? { message, workflow } : { message }),
});
if (!started.ok) fail(`start answered ${started.status}: ${await started.text()}`);
const answer = await started.json();
const fresh = started.headers.getSetCookie().map((c) => c.split(";")[0]);  // the session, set by start
cookies = [...cookies.filter((c) => !fresh.some((f) => f.split("=")[0] === c.split("=")[0])), ...fresh];

const socket = new Socket(answer.websocket_url, { params: { token: answer.ws_token }, transport: BrowserLikeWebSocket });
socket.onError(() => {});
socket.connect();
const channel = socket.channel(answer.websocket_channel, {});
let text = "";
const seqs = [];
let events = 0;
const track = (payload) => { events += 1; if (typeof payload.seq === "number") seqs.push(payload.seq); };
channel.on("tokens", (p) => { track(p); text += p.data; });
channel.on("status", track);
channel.on("error", (p) => { track(p); done({ status: "error", error: p }); });
channel.on("response", (p) => {
  track(p);
  if (p.status !== "ai_generated") done(p);
});
channel.join().receive("error", (r) => fail("join refused: " + JSON.stringify(r)));

function done(final) {
  clearTimeout(timer);
  const { ws_token, ...shown } = answer;  // the token is not needed by the test
  process.stdout.write(JSON.stringify({ answer: shown, token_present: !!ws_token, text, seqs, final, events }) + "\n");
  channel.leave();
  socket.disconnect(() => process.exit(0));
}
