// Reads our UI message streams with the AI SDK's own client pieces: DefaultChatTransport
// (what useChat uses: its request, its SSE parsing and part validation) and
// readUIMessageStream (rebuilds the assistant message from the parts).
// Input: a JSON object as argv[2]:
//   {get: url} reads a stream as useChat's resume does (reconnectToStream), or
//   {post: url, chatId, text, body, stopAfterDelta?} sends a message as useChat does
//   (sendMessages); stopAfterDelta aborts the request after the first text delta (stop()).
// Output (stdout): {message, text, errors, chunks}: the last message snapshot, its text
// parts joined, the errors the reader reported, and the chunk types in order.
import { DefaultChatTransport, readUIMessageStream } from "ai";

const config = JSON.parse(process.argv[2]);
const headers = config.headers ?? {};
let stream;
let abort = null;
if (config.get) {
  const transport = new DefaultChatTransport({
    headers,
    prepareReconnectToStreamRequest: () => ({ api: config.get, headers }),
  });
  stream = await transport.reconnectToStream({ chatId: config.chatId ?? "chat" });
} else {
  const transport = new DefaultChatTransport({ api: config.post, headers, body: config.body });
  abort = new AbortController();
  const messages = [{ id: "u1", role: "user", parts: [{ type: "text", text: config.text }] }];
  stream = await transport.sendMessages({
    chatId: config.chatId,
    messages,
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: abort.signal,
  });
}
if (stream === null) {
  process.stdout.write(JSON.stringify({ message: null, text: null, errors: [], chunks: [] }));
  process.exit(0);
}
const chunks = [];
const tee = stream.pipeThrough(
  new TransformStream({
    transform(chunk, controller) {
      chunks.push(chunk.type);
      controller.enqueue(chunk);
      if (config.stopAfterDelta && chunk.type === "text-delta") abort.abort(); // useChat's stop()
    },
  }),
);
const errors = [];
let message = null;
let stopped = false;
try {
  for await (const snapshot of readUIMessageStream({ stream: tee, onError: (e) => errors.push(String(e?.message ?? e)) })) {
    message = snapshot;
  }
} catch (err) {
  if (!config.stopAfterDelta) throw err;
  stopped = true;
}
const text = message ? message.parts.filter((p) => p.type === "text").map((p) => p.text).join("") : null;
process.stdout.write(JSON.stringify({ message, text, errors, chunks, stopped }));
