// The moderator's microphone: capture (mic-worklet.js), the /mic WebSocket and the microphone panel
// (see "Microphone" in docs/control-api.md). Loaded after app.js, whose $, el, command, token and view
// it uses; the mode selector goes through the console's own /ws connection.
"use strict";

const MIC_RATE = 48000;
const MIC_RATES = [8000, 48000];
const MIC_BLOCK_S = 0.02;
const MIC_BACKLOG_S = 0.5;  // audio waiting in the socket beyond this is dropped, never queued
const MIC_FINALS_KEPT = 5;
const MIC_STATES = {
  off: "mic off",
  starting: "asking for the microphone",
  connecting: "connecting",
  live: "mic live",
};

// session: what one press of "start" holds (tracks, audio context, worklet, socket), released as one
const mic = { state: "off", sent: 0, dropped: 0, rate: 0, level: 0, mode: "", elsewhere: false, session: null, stream: null };

async function micStart() {
  if (mic.session) return;
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia) {
    micNotice("no microphone here: the browser offers one only over https or on localhost", true);
    return;
  }
  if (!window.AudioWorkletNode) {
    micNotice("no microphone here: this browser has no AudioWorklet", true);
    return;
  }
  const session = { stream: null, context: null, node: null, ws: null, reason: "" };
  Object.assign(mic, { session, sent: 0, dropped: 0, rate: 0 });
  micNotice("");
  setMicState("starting");
  try {
    session.stream = await media.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      video: false,
    });
    mic.stream = session.stream;
    if (mic.session !== session) return micRelease(session);  // stopped while the browser asked
    const source = micSource(session);
    const context = session.context;
    const rate = Math.round(context.sampleRate);
    if (rate < MIC_RATES[0] || rate > MIC_RATES[1]) throw new Error(`the browser's audio runs at ${rate} Hz`);
    await context.audioWorklet.addModule("/static/mic-worklet.js");
    if (mic.session !== session) return micRelease(session);
    session.node = new AudioWorkletNode(context, "mic-blocks", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      processorOptions: { blockFrames: Math.round(rate * MIC_BLOCK_S) },
    });
    session.node.port.onmessage = (e) => onMicBlock(session, e.data);
    source.connect(session.node);
    if (context.state === "suspended") await context.resume();
    mic.rate = rate;
    micSocket(session);
  } catch (err) {
    if (mic.session === session) micStop(micProblem(err));
  }
}

// an audio context at 48 kHz when the browser can feed the microphone into one, else at its own rate
function micSource(session) {
  try {
    session.context = new AudioContext({ sampleRate: MIC_RATE, latencyHint: "interactive" });
    return session.context.createMediaStreamSource(session.stream);
  } catch (err) {  // Firefox does not resample a microphone into a context at another rate
    if (session.context) session.context.close().catch(() => {});
    session.context = new AudioContext({ latencyHint: "interactive" });
    return session.context.createMediaStreamSource(session.stream);
  }
}

function micProblem(err) {
  switch (err && err.name) {
    case "NotAllowedError": return "the microphone was refused (allow it in the browser's site settings)";
    case "NotFoundError": return "no microphone found";
    case "NotReadableError": return "the microphone is in use by another program";
    case "OverconstrainedError": return "the microphone cannot be opened as asked";
    default: return `the microphone failed: ${(err && err.message) || err}`;
  }
}

function micSocket(session) {
  setMicState("connecting");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/mic`);
  ws.binaryType = "arraybuffer";
  session.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ cmd: "auth", token }));  // in the first message, never in the address
    ws.send(JSON.stringify({ cmd: "mic.start", rate: mic.rate }));
  };
  ws.onmessage = (e) => {
    if (typeof e.data !== "string" || mic.session !== session) return;
    let msg;
    try { msg = JSON.parse(e.data); } catch { return; }
    onMicMessage(session, msg);
  };
  ws.onclose = (e) => {
    if (mic.session !== session) return;
    const why = mic.state === "live" ? "the microphone connection closed" : "the show refused the microphone";
    micStop(`${session.reason || why}${e.reason && !session.reason ? `: ${e.reason}` : ""} (${e.code})`);
  };
}

function onMicMessage(session, msg) {
  if (msg.ok === false && msg.error) {  // a refused auth or request
    session.reason = `${msg.error.code}: ${msg.error.message}`;
    micNotice(session.reason, true);
    return;
  }
  const data = msg.data || {};
  switch (msg.event) {
    case "mic":
      if (data.state === "live") {
        if (data.rate !== undefined && data.rate !== mic.rate) {
          session.reason = `the show expects ${data.rate} Hz, this browser records at ${mic.rate} Hz`;
          session.ws.close(1000);
          return;
        }
        setMicState("live");
        showMicMode(data.mode, data.delay_ms);
        if (data.asr_error) micNotice(`speech recognition is off: ${data.asr_error}`, true);
      } else if (data.state === "busy") {
        session.reason = data.message || "another console's microphone is live";
        micNotice(session.reason, true);
      }
      break;
    case "speech": setSpeaking(Boolean(data.speaking)); break;
    case "transcript": showTranscript(String(data.text || ""), Boolean(data.final)); break;
    case "barge_in": micNotice("you spoke over the avatar: it stopped"); break;
    case "error": micNotice(`${data.code}: ${data.message}`, true); break;
  }
}

function onMicBlock(session, block) {
  mic.level = Math.max(block.peak, mic.level * 0.8);
  $("mic-level").value = mic.level;
  const ws = session.ws;
  if (mic.session !== session || mic.state !== "live" || ws.readyState !== WebSocket.OPEN) return;
  if (ws.bufferedAmount > mic.rate * 2 * MIC_BACKLOG_S) {  // a slow link: skip, never build a backlog
    mic.dropped += 1;
    return;
  }
  ws.send(block.pcm);
  mic.sent += 1;
}

function micStop(reason = "") {
  const session = mic.session;
  mic.session = null;
  if (session) micRelease(session);
  if (mic.state === "live") mic.elsewhere = false;  // the live microphone was this one
  mic.level = 0;
  $("mic-level").value = 0;
  setSpeaking(false);
  $("mic-partial").textContent = "";
  setMicState("off");
  if (reason) micNotice(reason, true);
}

// lets go of everything a session holds (safe on a half-built one, and twice)
function micRelease(session) {
  if (session.stream) session.stream.getTracks().forEach((track) => track.stop());
  if (session.node) {
    session.node.port.onmessage = null;
    session.node.port.postMessage("stop");
    session.node.disconnect();
  }
  if (session.context && session.context.state !== "closed") session.context.close().catch(() => {});
  if (session.ws) {
    session.ws.onclose = null;
    if (session.ws.readyState < WebSocket.CLOSING) session.ws.close(1000, "mic stopped");
  }
}

// -- the panel -----------------------------------------------------------------------------------

function setMicState(state) {
  mic.state = state;
  const label = $("mic-state");
  label.textContent = state === "live" ? `${MIC_STATES.live} (${mic.rate} Hz)`
    : state === "off" && mic.elsewhere ? "another console's mic is live" : MIC_STATES[state];
  label.className = `mic-state ${state}`;
  const button = $("mic-start");
  button.textContent = mic.session ? "stop mic" : "start mic";
  button.setAttribute("aria-pressed", String(Boolean(mic.session)));
}

function setSpeaking(speaking) {
  const s = $("mic-speaking");
  s.dataset.speaking = String(speaking);
  s.textContent = speaking ? "speaking" : "quiet";
}

function showTranscript(text, final) {
  if (!final) {
    $("mic-partial").textContent = text;
    return;
  }
  $("mic-partial").textContent = "";
  if (!text) return;
  const finals = $("mic-finals");
  finals.append(el("li", { textContent: text }));
  while (finals.children.length > MIC_FINALS_KEPT) finals.firstElementChild.remove();
}

function showMicMode(mode, delayMs) {
  if (!mode) return;
  mic.mode = mode;
  const select = $("mic-mode");
  select.disabled = false;
  select.value = mode;
  select.title = mode === "passthrough" && delayMs ? `your voice goes on air ${delayMs} ms later` : "";
}

// the show's voice-in switches (from app.js: the state snapshot and state events)
function onVoice(voice) {
  if (!voice) return;
  showMicMode(voice.mode);
  mic.elsewhere = Boolean(voice.mic);
  setMicState(mic.state);
}

async function chooseMicMode() {
  const select = $("mic-mode");
  const result = await command("voice.mode", { mode: select.value });
  if (result && result.mode) showMicMode(result.mode);
  else select.value = mic.mode;  // refused: show what is really in force
}

function micNotice(text, isError = false) {
  const n = $("mic-notice");
  n.textContent = text;
  n.className = isError ? "notice error" : "notice";
}

// what the microphone is doing, for tests and curious operators
window.micStats = () => ({
  state: mic.state,
  sent_frames: mic.sent,
  dropped_frames: mic.dropped,
  rate: mic.rate,
  mode: mic.mode,
  tracks: mic.stream ? mic.stream.getTracks().filter((t) => t.readyState === "live").length : 0,
});

$("mic-start").onclick = () => (mic.session ? micStop() : micStart());
$("mic-mode").onchange = chooseMicMode;
$("mic-mode").disabled = true;  // until the show says which mode is in force
window.addEventListener("console:voice", (e) => onVoice(e.detail));
window.addEventListener("pagehide", () => micStop());
onVoice(view.voice);
