// Folds event sequences through the browser module's RequestState and prints what it holds, so
// tests/core/test_browser_module.py can compare it with core's modelriver.state.RequestState.
//
//   node request_state_fold.mjs '<JSON: [[[event, payload], ...], ...]>'
//
// "__joined__" stands for a join, ["__fail__", message] for fail(message). `trace` holds
// [partial, prose] read after every event (no clock: parsed on every read after a change, as
// core's RequestState without a clock).
import { RequestState } from "../../core/src/modelriver/browser/modelriver-link.js";

const cases = JSON.parse(process.argv[2]);
const out = cases.map((events) => {
  const state = new RequestState("chan", { clock: null });
  const trace = [];
  for (const [event, payload] of events) {
    if (event === "__joined__") state.joined();
    else if (event === "__fail__") state.fail(payload);
    else state.feed(event, payload);
    trace.push([state.partial, state.prose]);
  }
  return {
    text: state.text,
    status: state.status,
    attempt: state.attempt,
    steps: state.steps.map((s) => [s.id, s.name, s.status, s.duration, s.errorMessage]),
    notes: state.notes.map((n) => (n.kind === "failover"
      ? ["failover", n.from, n.to, n.reason, n.reset, n.seq] : ["tool_call", n.name, n.arguments, n.seq])),
    done: state.done,
    result: state.result === null ? null : state.result.status,
    error: state.error,
    intermediate: state.intermediate === null ? null : state.intermediate.status,
    structured: state.structured,
    trace,
  };
});
process.stdout.write(JSON.stringify(out) + "\n");
