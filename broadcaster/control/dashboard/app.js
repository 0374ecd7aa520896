// The moderator console: one WebSocket to /ws (see docs/control-api.md), no build step, no dependencies.
"use strict";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const CHAT_KEPT = 100;
const MAGIC_JPEG = "JPEG";
const MAGIC_PCM = "PCM1";
const TOPICS = ["on_air", "queue", "triage", "review", "state", "metrics"];
const LIVE_CONNECT_MS = 10000;
const LIVE_RETRY_MS = 60000;

const view = { frames: 0, queue: [], reviews: new Map(), scripts: [], switches: {}, liveMode: "", voice: null };
let ws = null;
let nextId = 1;
let retry = 0;
const pending = new Map();

function readToken() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem("broadcaster-token", fromUrl);
    history.replaceState(null, "", location.pathname);  // keep the token out of the address bar
    return fromUrl;
  }
  return sessionStorage.getItem("broadcaster-token") || askToken();
}

function askToken() {
  const token = (window.prompt("Console token (in data/control-token)") || "").trim();
  sessionStorage.setItem("broadcaster-token", token);
  return token;
}

let token = readToken();

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function notice(text, isError = false) {
  const n = $("notice");
  n.textContent = text;
  n.className = isError ? "notice error" : "notice";
}

function setConnection(state) {
  const c = $("connection");
  c.textContent = state;
  c.className = `conn ${state === "live" ? "live" : state === "disconnected" ? "down" : ""}`;
}

// -- requests ------------------------------------------------------------------------------------

function send(cmd, args = {}) {
  return new Promise((resolve, reject) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected"));
      return;
    }
    const id = nextId++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, cmd, ...args }));
  });
}

async function command(cmd, args = {}) {
  try {
    const result = await send(cmd, args);
    notice(`${cmd}: ok`);
    return result;
  } catch (err) {
    notice(`${cmd}: ${err.message}`, true);
    return null;
  }
}

function onReply(msg) {
  const waiter = pending.get(msg.id);
  if (!waiter) return;
  pending.delete(msg.id);
  if (msg.ok) waiter.resolve(msg.result);
  else waiter.reject(Object.assign(new Error(`${msg.error.code}: ${msg.error.message}`), { code: msg.error.code }));
}

// -- connection ----------------------------------------------------------------------------------

function connect() {
  setConnection("connecting");
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = async () => {
    try {
      await send("auth", { token });
      retry = 0;
      setConnection("live");
      await send("subscribe", { topics: TOPICS });
      applyState(await send("state"));
      startLive();
    } catch (err) {
      notice(err.message, true);
      if (err.code === "unauthorized") token = askToken();
      ws.close();
    }
  };
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") return onBinary(e.data);
    const msg = JSON.parse(e.data);
    if ("event" in msg) onEvent(msg.event, msg.data);
    else onReply(msg);
  };
  ws.onclose = () => {
    clearTimeout(liveRetry);
    stopLive();
    for (const waiter of pending.values()) waiter.reject(new Error("connection lost"));
    pending.clear();
    setConnection("disconnected");
    const delay = Math.min(10000, 500 * 2 ** retry++);
    setTimeout(connect, delay);
  };
}

// -- events --------------------------------------------------------------------------------------

function onEvent(topic, data) {
  switch (topic) {
    case "on_air": $("on-air").textContent = data.text || ""; break;
    case "queue": view.queue = data.items || []; renderQueue(); break;
    case "triage": addChat(data); break;
    case "review": onReview(data); break;
    case "state": Object.assign(view.switches, data); renderSwitches(); announceVoice(data.voice); break;
    case "metrics": renderMetrics(data); break;
    case "dropped": notice(`${data.count} event(s) skipped (slow connection); refreshing`); refresh(); break;
  }
}

async function refresh() {
  const state = await command("state");
  if (state) applyState(state);
}

function applyState(state) {
  if (!state) return;
  if (state.on_air) $("on-air").textContent = state.on_air.text || "";
  if (Array.isArray(state.queue)) { view.queue = state.queue; renderQueue(); }
  const waiting = state.review || state.reviews;
  if (Array.isArray(waiting)) {
    view.reviews = new Map(waiting.map((r) => [itemId(r), r]));
    renderReviews();
  }
  if (Array.isArray(state.scripts)) { view.scripts = state.scripts; renderScripts(); }
  if (Array.isArray(state.chat)) { $("chat").replaceChildren(); state.chat.forEach(addChat); }
  fillList("avatars", state.avatars);
  fillList("personas", state.personas);
  const { on_air, queue, review, reviews, scripts, avatars, personas, chat, ...switches } = state;
  Object.assign(view.switches, switches.switches || switches);
  renderSwitches();
  announceVoice(state.voice);
}

// the show's voice-in switches, for the microphone panel (mic.js)
function announceVoice(voice) {
  if (!voice || typeof voice !== "object") return;
  view.voice = voice;
  window.dispatchEvent(new CustomEvent("console:voice", { detail: voice }));
}

function fillList(id, names) {
  if (!Array.isArray(names)) return;
  document.getElementById(id).replaceChildren(...names.map((n) => el("option", { value: nameOf(n) })));
}

function itemId(item) { return item.id ?? item.item; }
const nameOf = (x) => (typeof x === "object" && x ? x.id || x.name : x);

function renderQueue() {
  const lanePos = new Map();
  const rows = view.queue.map((item) => {
    const lane = item.lane || "";
    const pos = lanePos.get(lane) || 0;
    lanePos.set(lane, pos + 1);
    const id = itemId(item);
    const button = (label, testid, fn) => el("button", { textContent: label, title: testid, onclick: fn });
    const li = el("li", {},
      el("span", { className: "lane", textContent: lane }),
      item.text || item.title || item.script || JSON.stringify(item),
      button("↑", "up", () => command("queue.move", { item: id, position: Math.max(0, pos - 1) })),
      button("↓", "down", () => command("queue.move", { item: id, position: pos + 1 })),
      button("✕", "remove", () => command("queue.remove", { item: id })));
    li.dataset.item = id;
    return li;
  });
  $("queue").replaceChildren(...rows);
}

function addChat(data) {
  const event = data.event || {};
  const verdict = typeof data.verdict === "object" && data.verdict ? data.verdict.decision : data.verdict;
  const reason = typeof data.verdict === "object" && data.verdict ? data.verdict.reason : "";
  const list = $("chat");
  list.append(el("li", {},
    el("span", { className: `verdict ${verdict || ""}`, textContent: `${verdict || "?"}${reason ? ` (${reason})` : ""}` }),
    el("span", { className: "who", textContent: (event.user && event.user.name) || event.platform || "" }),
    event.text || event.kind || ""));
  while (list.children.length > CHAT_KEPT) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function onReview(data) {
  // {"action": "waiting" | "approved" | "rejected", "item": {id, text, args: {question}}}
  const item = typeof data.item === "object" && data.item ? data.item : data;
  const status = data.action || data.status || "waiting";
  if (status === "waiting" || status === "pending") view.reviews.set(itemId(item), item);
  else view.reviews.delete(itemId(item));
  renderReviews();
}

function question(r) {
  const q = (r.args && r.args.question) || r.comment;
  if (!q) return "";
  return `${(q.user && q.user.name) || q.user || ""}: ${q.text || ""}`;
}

function renderReviews() {
  const rows = [...view.reviews.entries()].map(([id, r]) => {
    const text = el("input", { value: r.text || "", title: "edit before approving" });
    text.dataset.testid = "review-text";
    const li = el("li", {},
      el("span", { className: "who", textContent: question(r) }),
      text,
      el("button", { textContent: "approve", onclick: () => command("review.approve", text.value.trim() && text.value !== r.text
        ? { item: id, text: text.value } : { item: id }) }),
      el("button", { textContent: "reject", onclick: () => command("review.reject", { item: id }) }));
    li.dataset.item = id;
    li.querySelector("button").dataset.testid = "review-approve";
    li.querySelectorAll("button")[1].dataset.testid = "review-reject";
    return li;
  });
  $("review").replaceChildren(...rows);
}

function renderScripts() {
  const select = $("script-select");
  const chosen = select.value;
  select.replaceChildren(...view.scripts.map((s) => el("option", { value: nameOf(s), textContent: s.title || nameOf(s) })));
  if (chosen) select.value = chosen;
  renderSegments();
}

function renderSegments() {
  const script = view.scripts.find((s) => nameOf(s) === $("script-select").value);
  const segments = (script && script.segments) || [];
  document.getElementById("segments").replaceChildren(...segments.map((g) => el("option", { value: nameOf(g) })));
}

function renderSwitches() {
  const parts = Object.entries(view.switches)
    .filter(([, v]) => v === null || typeof v !== "object")
    .map(([k, v]) => el("span", {}, `${k}: `, el("b", { textContent: String(v) })));
  $("switches").replaceChildren(...parts);
}

function renderMetrics(m) {
  const parts = [["fps", m.fps], ["lead ms", m.lead_ms], ["late p99 ms", m.late_p99_ms], ["repeats", m.repeats]];
  for (const o of m.outputs || []) parts.push([`${o.kind} ${o.name}`, `${o.state} (${o.dropped} dropped)`]);
  if (m.chat) parts.push(["chat queued", m.chat.queued]);
  if (m.director && m.director.review_pending !== undefined) parts.push(["review pending", m.director.review_pending]);
  if (m.control) parts.push(["consoles", m.control.clients]);
  $("metrics").replaceChildren(...parts.filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => el("span", {}, `${k} `, el("b", { textContent: String(v) }))));
}

// -- live view: the program over WebRTC (encoded once for every viewer), pictures as the fallback --

let live = null;  // { pc, viewer, meter }
let liveRetry = null;

async function startLive() {
  clearTimeout(liveRetry);
  const wasPictures = view.liveMode === "pictures";
  if (!window.RTCPeerConnection) return fallBack("this browser has no WebRTC");
  stopLive();
  const pc = new RTCPeerConnection();
  live = { pc, viewer: null, meter: null };
  const stream = new MediaStream();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.ontrack = (e) => stream.addTrack(e.track);
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed" && live && live.pc === pc) fallBack("the WebRTC connection failed");
  };
  const video = $("live");
  video.srcObject = stream;
  video.onplaying = () => {
    if (!live || live.pc !== pc) return;
    view.liveMode = "webrtc";
    video.hidden = false;
    $("preview").hidden = true;
    countFrames(video, pc);
    if (wasPictures) send("subscribe", { topics: TOPICS }).catch(() => {});  // pictures no longer needed
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    if (!live || live.pc !== pc) return;  // the connection went while gathering: a new one starts over
    const answer = await send("watch.offer", { sdp: pc.localDescription.sdp });
    if (!live || live.pc !== pc) return;
    live.viewer = answer.viewer;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    video.play().catch(() => {});  // muted, so no click is needed
  } catch (err) {
    if (live && live.pc === pc) fallBack(err.message);
    return;
  }
  setTimeout(() => {
    if (live && live.pc === pc && view.liveMode !== "webrtc") fallBack("WebRTC did not connect");
  }, LIVE_CONNECT_MS);
}

function gathered(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
    setTimeout(resolve, ms);
  });
}

function countFrames(video, pc) {
  const frame = () => {
    if (!live || live.pc !== pc) return;
    view.frames += 1;
    $("frame-counter").textContent = `frame ${view.frames} (WebRTC)`;
    video.requestVideoFrameCallback(frame);
  };
  video.requestVideoFrameCallback(frame);
}

function stopLive() {
  if (!live) return;
  const { pc, viewer, meter } = live;
  live = null;
  if (meter && meter.context.state !== "closed") meter.context.close().catch(() => {});
  pc.close();
  if (viewer) send("watch.stop", { viewer }).catch(() => {});  // the server also lets go when we leave
}

async function fallBack(why) {
  stopLive();
  view.liveMode = "pictures";
  $("live").hidden = true;
  $("live").srcObject = null;
  $("preview").hidden = false;
  notice(`live view: ${why}; showing pictures instead`);
  clearTimeout(liveRetry);
  liveRetry = setTimeout(() => { if (ws && ws.readyState === WebSocket.OPEN) startLive(); }, LIVE_RETRY_MS);
  try {
    await send("subscribe", { topics: [...TOPICS, "preview"] });
  } catch (err) {
    notice(err.message, true);
  }
}

// what the live view decoded and how loud it is, for tests and curious operators
window.liveStats = async () => {
  const out = { mode: view.liveMode, video: 0, audio: 0, level: 0 };
  if (!live) return out;
  (await live.pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") out.video = s.framesDecoded || 0;
    if (s.kind === "audio") out.audio = s.totalSamplesReceived || 0;
  });
  out.level = soundLevel();
  return out;
};

// the peak of the program's sound over the last 40 ms, 0..1 (a meter on the live stream itself)
function soundLevel() {
  const stream = $("live").srcObject;
  if (!live || !stream || !stream.getAudioTracks().length) return 0;
  if (!live.meter) {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 2048;
    context.createMediaStreamSource(stream).connect(analyser);
    live.meter = { context, analyser, data: new Float32Array(analyser.fftSize) };
  }
  live.meter.analyser.getFloatTimeDomainData(live.meter.data);
  return live.meter.data.reduce((peak, v) => Math.max(peak, Math.abs(v)), 0);
}

// -- preview pictures and sound (the fallback) -----------------------------------------------------

let audio = null;
let audioAt = 0;

function onBinary(buffer) {
  const head = new DataView(buffer, 0, 16);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 4));
  const k = head.getUint32(4, true), a = head.getUint32(8, true), b = head.getUint32(12, true);
  if (magic === MAGIC_JPEG) showPicture(buffer.slice(16), k, a, b);
  else if (magic === MAGIC_PCM && audio) playSound(new Int16Array(buffer.slice(16)), a);
}

async function showPicture(jpeg, k, width, height) {
  const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
  const canvas = $("preview");
  if (canvas.width !== width || canvas.height !== height) Object.assign(canvas, { width, height });
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  view.frames += 1;
  $("frame-counter").textContent = `frame ${view.frames} (tick ${k})`;
}

function playSound(samples, rate) {
  const buffer = audio.createBuffer(1, samples.length, rate);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
  const source = audio.createBufferSource();
  source.buffer = buffer;
  source.connect(audio.destination);
  const now = audio.currentTime;
  if (audioAt < now || audioAt > now + 1) audioAt = now + 0.2;  // start, or catch up after a stall
  source.start(audioAt);
  audioAt += buffer.duration;
}

// -- controls ------------------------------------------------------------------------------------

function say(mode) {
  const input = $("say-text");
  const text = input.value.trim();
  if (!text) return;
  command("say", { text, mode }).then((r) => { if (r !== null) input.value = ""; });
}

function bind() {
  $("say-now").onclick = () => say("now");
  $("say-next").onclick = () => say("next");
  $("say-text").onkeydown = (e) => { if (e.key === "Enter") say(e.shiftKey ? "now" : "next"); };
  $("interrupt").onclick = () => command("interrupt");
  $("skip").onclick = () => command("skip");
  $("chat-pause").onclick = () => command("chat.pause");
  $("chat-resume").onclick = () => command("chat.resume");
  $("review-toggle").onclick = () => command(view.switches.review_mode ? "review.off" : "review.on");
  $("script-select").onchange = renderSegments;
  const script = () => $("script-select").value;
  const segment = () => $("script-segment").value.trim();
  $("script-start").onclick = () => command("script.start", segment() ? { script: script(), segment: segment() } : { script: script() });
  $("script-jump").onclick = () => command("script.jump", { script: script(), segment: segment() });
  $("script-stop").onclick = () => command("script.stop");
  $("avatar-switch").onclick = () => command("avatar.switch", { name: $("avatar-name").value.trim() });
  $("persona-switch").onclick = () => command("persona.switch", { name: $("persona-name").value.trim() });
  $("sound").onclick = () => {
    if (view.liveMode === "webrtc") {
      const video = $("live");
      video.muted = !video.muted;
      $("sound").textContent = video.muted ? "sound on" : "sound off";
      return;
    }
    if (audio) { audio.close(); audio = null; $("sound").textContent = "sound on"; return; }
    audio = new AudioContext();  // browsers allow sound only after a click
    audioAt = 0;
    $("sound").textContent = "sound off";
  };
}

bind();
connect();
