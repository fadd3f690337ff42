// The devices plot: an SVG map-like view of a workspace's coverage circle
// and its devices' last positions, in an equirectangular projection around
// the coverage centre (east and north in metres; fine at the few-km scale
// of a coverage area, wrong near the poles, which no drone fleet covers).

const SVG = 'http://www.w3.org/2000/svg';
const METRES_PER_DEGREE = 111_320; // as lx_protocol::geo, so the plot agrees with dispatch
const SIZE = 480; // view box side
const MARGIN = 40;

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Metres east and north of `centre`.
export function project(centre, point) {
  const east = (point.lng - centre.lng) * METRES_PER_DEGREE * Math.cos(centre.lat * Math.PI / 180);
  const north = (point.lat - centre.lat) * METRES_PER_DEGREE;
  return { east, north };
}

// A round tick step (1, 2 or 5 × 10^n metres) giving about four ticks per half axis.
function tickStep(half) {
  const raw = half / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || power * 10;
}

function metres(m) {
  const abs = Math.abs(m);
  if (abs === 0) return '0';
  return abs >= 1000 ? `${(m / 1000).toFixed(abs % 1000 === 0 ? 0 : 1)} km` : `${Math.round(m)} m`;
}

// An empty plot of `reach` metres either side of `centre`, with its grid
// and axes; `x`, `y` place metres east and north, `at` turns a click into
// a point.
function canvas(centre, reach, label) {
  const svg = el('svg', { viewBox: `0 0 ${SIZE} ${SIZE}`, class: 'plot', role: 'img', 'aria-label': label });
  const scale = (SIZE / 2 - MARGIN) / reach;
  const x = (east) => SIZE / 2 + east * scale;
  const y = (north) => SIZE / 2 - north * scale;
  const step = tickStep(reach);
  const grid = el('g', { class: 'plot-grid' });
  for (let m = -Math.floor(reach / step) * step; m <= reach; m += step) {
    grid.append(el('line', { x1: x(m), y1: MARGIN / 2, x2: x(m), y2: SIZE - MARGIN / 2 }));
    grid.append(el('line', { x1: MARGIN / 2, y1: y(m), x2: SIZE - MARGIN / 2, y2: y(m) }));
    grid.append(el('text', { x: x(m), y: SIZE - 6, 'text-anchor': 'middle' }, metres(m)));
    if (m !== 0) grid.append(el('text', { x: 4, y: y(m) + 4 }, metres(m)));
  }
  svg.append(grid);
  svg.append(el('text', { x: SIZE - 4, y: SIZE / 2 - 6, 'text-anchor': 'end', class: 'plot-axis' }, 'east'));
  svg.append(el('text', { x: SIZE / 2 + 6, y: MARGIN / 2 + 10, class: 'plot-axis' }, 'north'));
  // The point under a click, back through the projection.
  const at = (event) => {
    const matrix = svg.getScreenCTM();
    if (!matrix) return null;
    const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    const east = (p.x - SIZE / 2) / scale;
    const north = (SIZE / 2 - p.y) / scale;
    const lat = centre.lat + north / METRES_PER_DEGREE;
    const lng = centre.lng + east / (METRES_PER_DEGREE * Math.cos(centre.lat * Math.PI / 180));
    const round = (v) => Math.round(v * 1e7) / 1e7;
    return { lat: round(lat), lng: round(lng) };
  };
  return { svg, x, y, scale, at };
}

// `coverage`: {lat, lng, radiusMeters} or null; `devices`: [{name, connected,
// position: {lat, lng, accuracyMeters} | null}]. Returns the <svg>.
export function coveragePlot(coverage, devices) {
  const located = devices.filter((d) => d.position);
  let centre;
  if (coverage) {
    centre = { lat: coverage.lat, lng: coverage.lng };
  } else if (located.length > 0) {
    centre = {
      lat: located.reduce((s, d) => s + d.position.lat, 0) / located.length,
      lng: located.reduce((s, d) => s + d.position.lng, 0) / located.length,
    };
  } else {
    centre = null;
  }
  if (!centre) {
    const svg = el('svg', {
      viewBox: `0 0 ${SIZE} ${SIZE}`, class: 'plot', role: 'img', 'aria-label': 'coverage and device positions',
    });
    svg.append(el('text', { x: SIZE / 2, y: SIZE / 2, 'text-anchor': 'middle', class: 'plot-empty' },
      'no coverage area and no device position yet'));
    return svg;
  }
  const points = located.map((d) => ({ device: d, at: project(centre, d.position) }));
  // Half the shown width: the circle and every device, with room around.
  const reach = Math.max(
    coverage ? coverage.radiusMeters : 0,
    ...points.map((p) => Math.max(Math.abs(p.at.east), Math.abs(p.at.north))),
    100,
  ) * 1.15;
  const { svg, x, y, scale } = canvas(centre, reach, 'coverage and device positions');

  if (coverage) {
    svg.append(el('circle', {
      cx: x(0), cy: y(0), r: coverage.radiusMeters * scale, class: 'plot-coverage',
      'data-radius-meters': coverage.radiusMeters,
    }));
    svg.append(el('circle', { cx: x(0), cy: y(0), r: 3, class: 'plot-centre' }));
  }
  for (const { device, at } of points) {
    const g = el('g', {
      class: `plot-device ${device.connected ? 'connected' : 'stale'}`,
      'data-device': device.name,
      'data-connected': device.connected ? 'true' : 'false',
    });
    const accuracy = (device.position.accuracyMeters || 0) * scale;
    if (accuracy > 4) g.append(el('circle', { cx: x(at.east), cy: y(at.north), r: accuracy, class: 'plot-accuracy' }));
    g.append(el('circle', { cx: x(at.east), cy: y(at.north), r: 6, class: 'plot-dot' }));
    const label = `${device.name} · ${device.connected ? 'connected' : 'not connected'}`;
    g.append(el('text', { x: x(at.east) + 9, y: y(at.north) - 8 }, label));
    g.append(el('title', {}, `${label}\n${device.position.lat.toFixed(6)}, ${device.position.lng.toFixed(6)}`));
    svg.append(g);
  }
  return svg;
}

// Where to look: the suppliers' coverage circles (`GET /coverage`) around
// their centre, and the point picked so far. A click anywhere picks the
// point under it: `onPick({lat, lng})`. Returns the <svg>.
export function pickerPlot(circles, picked, onPick) {
  const around = circles.length
    ? {
      lat: circles.reduce((s, c) => s + c.lat, 0) / circles.length,
      lng: circles.reduce((s, c) => s + c.lng, 0) / circles.length,
    }
    : picked;
  if (!around) {
    const svg = el('svg', { viewBox: `0 0 ${SIZE} ${SIZE}`, class: 'plot', role: 'img', 'aria-label': 'where to look' });
    svg.append(el('text', { x: SIZE / 2, y: SIZE / 2, 'text-anchor': 'middle', class: 'plot-empty' },
      'no supplier covers anywhere yet: type a point instead'));
    return svg;
  }
  const placed = circles.map((c) => ({ circle: c, at: project(around, c) }));
  const reach = Math.max(
    ...placed.map((p) => Math.max(Math.abs(p.at.east), Math.abs(p.at.north)) + p.circle.radiusMeters),
    1000,
  ) * 1.15;
  const { svg, x, y, scale, at } = canvas(around, reach, 'where to look: click to pick the point');
  svg.classList.add('plot-picker');
  for (const { circle, at: c } of placed) {
    svg.append(el('circle', {
      cx: x(c.east), cy: y(c.north), r: circle.radiusMeters * scale, class: 'plot-coverage',
      'data-lat': circle.lat, 'data-lng': circle.lng, 'data-radius-meters': circle.radiusMeters,
    }));
  }
  if (picked) {
    const p = project(around, picked);
    svg.append(el('circle', {
      cx: x(p.east), cy: y(p.north), r: 7, class: 'plot-picked', 'data-lat': picked.lat, 'data-lng': picked.lng,
    }));
  }
  svg.addEventListener('click', (event) => {
    const point = at(event);
    if (point) onPick(point);
  });
  return svg;
}
