// WebRTC in the page: the WHIP publisher (the operator's camera to the
// session's ingest) and the WHEP player (the session's video to the
// consumer). Both send their offer once ICE gathering is complete (the
// server does not take trickled candidates), keep the resource URL from
// `Location` and DELETE it when they stop.

import { ApiError, envelopeError } from './api.js';

// Gathering on loopback takes milliseconds; a host with an unreachable
// STUN server must not hang the page, so the offer goes after 3 s anyway.
function iceGathered(pc, limitMs = 3000) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') { resolve(); return; }
    const done = () => {
      if (pc.iceGatheringState === 'complete') {
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      }
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, limitMs);
  });
}

// POSTs the offer; resolves to {answer, resource}.
async function exchange(url, offerSdp, what) {
  let resp;
  try {
    resp = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp' },
      body: offerSdp,
    });
  } catch (err) {
    throw new ApiError(0, 'NETWORK_ERROR', `${what} POST did not reach the media server (${err.message})`, '');
  }
  if (resp.status !== 201) throw await envelopeError(resp);
  const location = resp.headers.get('location');
  const resource = location ? new URL(location, url).toString() : null;
  return { answer: await resp.text(), resource };
}

async function hangUp(resource, keepalive = false) {
  if (!resource) return null;
  try {
    const resp = await fetch(resource, { method: 'DELETE', keepalive });
    return resp.status;
  } catch {
    return null; // the server is gone or the page is closing: nothing to hang up
  }
}

// The cameras the browser offers. Before the user allowed the camera the
// browser hides their names and ids, so `allow` asks for it once first.
export async function cameras(allow = false) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
    throw new ApiError(0, 'NO_MEDIA_DEVICES', 'this browser offers no camera access (a secure context is needed: https or localhost)', '');
  }
  if (allow) {
    const probe = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    probe.getTracks().forEach((t) => t.stop());
  }
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === 'videoinput');
}

export const CODECS = [
  { id: 'vp8', label: 'VP8', mime: 'video/VP8' },
  { id: 'h264', label: 'H.264', mime: 'video/H264' },
];

export class WhipPublisher {
  constructor() {
    this.pc = null;
    this.stream = null;
    this.resource = null;
    this.state = 'idle';
    this.codec = null;
    this.error = null;
    this.deleted = null;
  }

  get running() { return this.pc !== null; }

  async start({ whipUrl, deviceId, codec, width = 640, height = 480 }) {
    if (this.pc) throw new ApiError(0, 'INVALID_STATE', 'already publishing', '');
    const wanted = CODECS.find((c) => c.id === codec);
    if (!wanted) throw new ApiError(0, 'INVALID_INPUT', `unknown codec ${codec}`, '');
    const offered = RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === wanted.mime);
    if (offered.length === 0) {
      throw new ApiError(0, 'VIDEO_ERROR', `this browser cannot send ${wanted.label}`, '');
    }
    this.state = 'camera';
    this.error = null;
    this.deleted = null;
    const video = { width: { ideal: width }, height: { ideal: height } };
    if (deviceId) video.deviceId = { exact: deviceId };
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
      this.pc = new RTCPeerConnection();
      const track = this.stream.getVideoTracks()[0];
      // A camera keeps its picture size: the consumer's /frame and any agent
      // reading it expect a steady size, so under load the frame rate drops instead.
      track.contentHint = 'detail';
      const transceiver = this.pc.addTransceiver(track, { direction: 'sendonly', streams: [this.stream] });
      transceiver.setCodecPreferences(offered);
      const params = transceiver.sender.getParameters();
      params.degradationPreference = 'maintain-resolution';
      await transceiver.sender.setParameters(params).catch(() => { /* older browsers: their default */ });
      this.pc.addEventListener('connectionstatechange', () => {
        if (this.pc) this.state = this.pc.connectionState;
      });
      this.state = 'offering';
      await this.pc.setLocalDescription(await this.pc.createOffer());
      await iceGathered(this.pc);
      const { answer, resource } = await exchange(whipUrl, this.pc.localDescription.sdp, 'WHIP');
      this.resource = resource;
      await this.pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this.codec = wanted.label;
      this.state = this.pc.connectionState;
    } catch (err) {
      await this.stop();
      this.state = 'failed';
      throw err;
    }
  }

  // {framesEncoded, width, height, codec, bitrateKbps}, or null when stopped.
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    const names = {};
    let out = null;
    report.forEach((s) => { if (s.type === 'codec') names[s.id] = s.mimeType; });
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out = {
          framesEncoded: s.framesEncoded || 0,
          width: s.frameWidth || 0,
          height: s.frameHeight || 0,
          codec: names[s.codecId] || null,
          bytesSent: s.bytesSent || 0,
        };
      }
    });
    return out;
  }

  async stop(keepalive = false) {
    const resource = this.resource;
    this.resource = null;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    this.state = 'stopped';
    if (resource) this.deleted = await hangUp(resource, keepalive);
  }
}

export class WhepPlayer {
  constructor(video) {
    this.video = video;
    this.pc = null;
    this.resource = null;
  }

  get running() { return this.pc !== null; }

  async start(whepUrl) {
    if (this.pc) return;
    try {
      this.pc = new RTCPeerConnection();
      this.pc.addTransceiver('video', { direction: 'recvonly' });
      this.pc.addEventListener('track', (e) => {
        this.video.srcObject = e.streams[0] || new MediaStream([e.track]);
        this.video.play().catch(() => { /* autoplay refused: the controls stay */ });
      });
      await this.pc.setLocalDescription(await this.pc.createOffer());
      await iceGathered(this.pc);
      const { answer, resource } = await exchange(whepUrl, this.pc.localDescription.sdp, 'WHEP');
      this.resource = resource;
      await this.pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  get connectionState() { return this.pc ? this.pc.connectionState : 'stopped'; }

  // {framesDecoded, width, height, codec}, or null when stopped.
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    const names = {};
    let out = null;
    report.forEach((s) => { if (s.type === 'codec') names[s.id] = s.mimeType; });
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out = {
          framesDecoded: s.framesDecoded || 0,
          width: s.frameWidth || 0,
          height: s.frameHeight || 0,
          codec: names[s.codecId] || null,
        };
      }
    });
    return out;
  }

  async stop(keepalive = false) {
    const resource = this.resource;
    this.resource = null;
    if (this.pc) this.pc.close();
    this.pc = null;
    this.video.srcObject = null;
    if (resource) await hangUp(resource, keepalive);
  }
}
