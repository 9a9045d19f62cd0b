// Drives @ag-ui/client's HttpAgent against our POST /v1/ag-ui, one run per prompt, all on
// one thread (the agent keeps its messages between runs, as CopilotKit does).
// Input: a JSON object as argv[2]:
//   {url, threadId, prompts: [..], forwardedProps, headers?, abortAfterText?: bool,
//    cancelUrl?, cancelAgent?: cancel that agent through REST once the fan-out is announced}
// Output (stdout, one JSON object): {runs: [{newMessages, events, error}], messages}
// Every event the client accepted is recorded (after its verification); a verification
// error rejects runAgent and is reported as `error`.
import { HttpAgent } from "@ag-ui/client";

const config = JSON.parse(process.argv[2]);
const agent = new HttpAgent({
  url: config.url,
  threadId: config.threadId,
  headers: config.headers ?? {},
});

const runs = [];
for (const prompt of config.prompts) {
  agent.addMessage({ id: `user-${runs.length + 1}`, role: "user", content: prompt });
  const events = [];
  let error = null;
  let newMessages = [];
  let cancelled = false;
  try {
    const result = await agent.runAgent(
      { forwardedProps: config.forwardedProps },
      {
        onEvent: ({ event }) => {
          events.push(event);
          if (config.abortAfterText && event.type === "TEXT_MESSAGE_CONTENT") {
            agent.abortRun(); // as a UI's stop button does: the connection closes
          }
          if (config.cancelUrl && !cancelled && event.type === "CUSTOM" && event.name === "fanout_start") {
            // Cancel one agent through the ordinary REST endpoint, by the announced id.
            cancelled = true;
            fetch(`${config.cancelUrl}/v1/fanouts/${event.value.fanout_id}/cancel`, {
              method: "POST",
              headers: { "content-type": "application/json", ...(config.headers ?? {}) },
              body: JSON.stringify({ agent_id: config.cancelAgent }),
            });
          }
        },
      },
    );
    newMessages = result.newMessages;
  } catch (err) {
    error = `${err?.name ?? "Error"}: ${err?.message ?? String(err)}`;
  }
  runs.push({ newMessages, events, error });
}
process.stdout.write(JSON.stringify({ runs, messages: agent.messages }));
