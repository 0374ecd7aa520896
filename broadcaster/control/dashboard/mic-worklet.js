// The microphone's capture, on the audio thread: float samples in, blocks of signed 16-bit
// little-endian mono PCM (about 20 ms each) out to the page (mic.js), with each block's peak level.
"use strict";

class MicBlocks extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frames = options.processorOptions.blockFrames;
    this.running = true;
    this.port.onmessage = (e) => { if (e.data === "stop") this.running = false; };
    this.next();
  }

  next() {
    this.block = new DataView(new ArrayBuffer(this.frames * 2));
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    if (!this.running) return false;  // the page let go: the node may be collected
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;  // nothing connected (yet)
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (const channel of channels) s += channel[i];
      s = Math.max(-1, Math.min(1, s / channels.length));
      this.peak = Math.max(this.peak, Math.abs(s));
      this.block.setInt16(this.filled * 2, Math.round(s < 0 ? s * 0x8000 : s * 0x7fff), true);
      if (++this.filled === this.frames) {
        const pcm = this.block.buffer;
        this.port.postMessage({ pcm, peak: this.peak }, [pcm]);
        this.next();
      }
    }
    return true;
  }
}

registerProcessor("mic-blocks", MicBlocks);
