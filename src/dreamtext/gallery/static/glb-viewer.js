/* dreamtext's GLB viewer: plain WebGL, no libraries, nothing fetched but the GLB itself.
 *
 * Every <canvas class="glb-viewer" data-src="mesh.glb"> on the page shows that binary glTF file:
 * triangles with POSITION, NORMAL (computed when absent), COLOR_0, TEXCOORD_0 and a base colour
 * texture, placed by the scene's node transforms. Drag to orbit, scroll to zoom, double-click to
 * reset. The camera starts where dreamtext's turntables start: in front (+z), 70 degrees from the
 * up axis (+y). The canvas reports its state in data-state ("loading", "ready" or "error") and the
 * triangle count in data-triangles.
 */
(function () {
  "use strict";

  var GLB_MAGIC = 0x46546c67; // "glTF", little endian
  var CHUNK_JSON = 0x4e4f534a;
  var CHUNK_BIN = 0x004e4942;
  var TRIANGLES = 4;
  var COMPONENTS = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4, MAT2: 4, MAT3: 9, MAT4: 16 };
  var READERS = {
    5120: ["getInt8", 1, 127], 5121: ["getUint8", 1, 255], 5122: ["getInt16", 2, 32767],
    5123: ["getUint16", 2, 65535], 5125: ["getUint32", 4, 0], 5126: ["getFloat32", 4, 0]
  };
  var BACKGROUND = [0.953, 0.957, 0.965]; // the page's panel colour (#f3f4f6)
  var FOVY = 40 * Math.PI / 180;
  var START_POLAR = 70 * Math.PI / 180;

  // -- GLB parsing -------------------------------------------------------------------------------

  function parseGlb(buffer) {
    var view = new DataView(buffer);
    if (buffer.byteLength < 20 || view.getUint32(0, true) !== GLB_MAGIC) throw new Error("not a GLB file");
    if (view.getUint32(4, true) !== 2) throw new Error("GLB version " + view.getUint32(4, true) + "; only version 2 is supported");
    var end = Math.min(view.getUint32(8, true), buffer.byteLength);
    var offset = 12, json = null, bin = null;
    while (offset + 8 <= end) {
      var length = view.getUint32(offset, true), type = view.getUint32(offset + 4, true), start = offset + 8;
      if (start + length > end) throw new Error("the GLB is truncated");
      if (type === CHUNK_JSON) json = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, start, length)));
      else if (type === CHUNK_BIN && bin === null) bin = new DataView(buffer, start, length);
      offset = start + length;
    }
    if (json === null) throw new Error("the GLB has no JSON chunk");
    return { json: json, bin: bin };
  }

  // One accessor as a flat array of `ArrayType` (normalised integers become floats in [0, 1] or [-1, 1]).
  function readAccessor(gltf, index, ArrayType) {
    var accessor = gltf.json.accessors[index];
    var size = COMPONENTS[accessor.type], reader = READERS[accessor.componentType];
    if (!size || !reader) throw new Error("accessor " + index + " has an unknown type");
    var count = accessor.count, values = new ArrayType(count * size);
    if (accessor.bufferView === undefined) return { values: values, size: size, count: count };
    var bufferView = gltf.json.bufferViews[accessor.bufferView];
    if (gltf.bin === null || (bufferView.buffer || 0) !== 0) throw new Error("only data inside the GLB is supported");
    var bytes = reader[1], stride = bufferView.byteStride || bytes * size;
    var viewStart = bufferView.byteOffset || 0, start = viewStart + (accessor.byteOffset || 0);
    if (count > 0 && start + (count - 1) * stride + bytes * size > Math.min(viewStart + bufferView.byteLength, gltf.bin.byteLength)) {
      throw new Error("accessor " + index + " runs past its data");
    }
    var read = gltf.bin[reader[0]].bind(gltf.bin), scale = accessor.normalized && reader[2] ? 1 / reader[2] : 1;
    for (var i = 0; i < count; i++) {
      for (var c = 0; c < size; c++) {
        var value = read(start + i * stride + c * bytes, true) * scale;
        values[i * size + c] = scale === 1 ? value : Math.max(value, -1);
      }
    }
    return { values: values, size: size, count: count };
  }

  // -- 4x4 matrices, column major as WebGL wants them ---------------------------------------------

  function identity() { return [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]; }

  function multiply(a, b) {
    var out = new Array(16);
    for (var col = 0; col < 4; col++) {
      for (var row = 0; row < 4; row++) {
        var sum = 0;
        for (var k = 0; k < 4; k++) sum += a[k * 4 + row] * b[col * 4 + k];
        out[col * 4 + row] = sum;
      }
    }
    return out;
  }

  function nodeMatrix(node) {
    if (node.matrix) return node.matrix.slice();
    var t = node.translation || [0, 0, 0], q = node.rotation || [0, 0, 0, 1], s = node.scale || [1, 1, 1];
    var x = q[0], y = q[1], z = q[2], w = q[3];
    return [
      (1 - 2 * (y * y + z * z)) * s[0], 2 * (x * y + z * w) * s[0], 2 * (x * z - y * w) * s[0], 0,
      2 * (x * y - z * w) * s[1], (1 - 2 * (x * x + z * z)) * s[1], 2 * (y * z + x * w) * s[1], 0,
      2 * (x * z + y * w) * s[2], 2 * (y * z - x * w) * s[2], (1 - 2 * (x * x + y * y)) * s[2], 0,
      t[0], t[1], t[2], 1
    ];
  }

  function perspective(fovy, aspect, near, far) {
    var f = 1 / Math.tan(fovy / 2), depth = 1 / (near - far);
    return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * depth, -1, 0, 0, 2 * far * near * depth, 0];
  }

  function normalize(v) {
    var length = Math.hypot(v[0], v[1], v[2]) || 1;
    return [v[0] / length, v[1] / length, v[2] / length];
  }

  function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }

  function lookAt(eye, target) {
    var back = normalize([eye[0] - target[0], eye[1] - target[1], eye[2] - target[2]]);
    var right = normalize(cross([0, 1, 0], back));
    if (Math.hypot(right[0], right[1], right[2]) < 1e-6) right = [1, 0, 0];
    var up = cross(back, right);
    var dot = function (a) { return a[0] * eye[0] + a[1] * eye[1] + a[2] * eye[2]; };
    return [right[0], up[0], back[0], 0, right[1], up[1], back[1], 0, right[2], up[2], back[2], 0, -dot(right), -dot(up), -dot(back), 1];
  }

  // -- scene assembly ------------------------------------------------------------------------------

  // Every (mesh, world matrix) pair of the default scene (or of every mesh, when there is no scene).
  function meshInstances(json) {
    var instances = [];
    var visit = function (index, parent) {
      var node = json.nodes[index], matrix = multiply(parent, nodeMatrix(node));
      if (node.mesh !== undefined) instances.push({ mesh: node.mesh, matrix: matrix });
      (node.children || []).forEach(function (child) { visit(child, matrix); });
    };
    var scene = json.scenes && json.scenes[json.scene || 0];
    if (scene && json.nodes) scene.nodes.forEach(function (index) { visit(index, identity()); });
    else (json.meshes || []).forEach(function (_, index) { instances.push({ mesh: index, matrix: identity() }); });
    return instances;
  }

  function transformPoints(values, m) {
    for (var i = 0; i < values.length; i += 3) {
      var x = values[i], y = values[i + 1], z = values[i + 2];
      values[i] = m[0] * x + m[4] * y + m[8] * z + m[12];
      values[i + 1] = m[1] * x + m[5] * y + m[9] * z + m[13];
      values[i + 2] = m[2] * x + m[6] * y + m[10] * z + m[14];
    }
  }

  // Normals go through the cofactor matrix (the inverse transpose up to a positive factor).
  function transformNormals(values, m) {
    var a = [m[0], m[1], m[2]], b = [m[4], m[5], m[6]], c = [m[8], m[9], m[10]];
    var ca = cross(b, c), cb = cross(c, a), cc = cross(a, b);
    var sign = (a[0] * ca[0] + a[1] * ca[1] + a[2] * ca[2]) < 0 ? -1 : 1;
    for (var i = 0; i < values.length; i += 3) {
      var x = values[i], y = values[i + 1], z = values[i + 2];
      var n = normalize([ca[0] * x + cb[0] * y + cc[0] * z, ca[1] * x + cb[1] * y + cc[1] * z, ca[2] * x + cb[2] * y + cc[2] * z]);
      values[i] = sign * n[0]; values[i + 1] = sign * n[1]; values[i + 2] = sign * n[2];
    }
  }

  // Smooth vertex normals: each vertex gets the area-weighted sum of its triangles' normals.
  function computeNormals(positions, indices, vertexCount) {
    var normals = new Float32Array(vertexCount * 3);
    var triangleCount = indices ? indices.length / 3 : vertexCount / 3;
    for (var t = 0; t < triangleCount; t++) {
      var i0 = indices ? indices[3 * t] : 3 * t, i1 = indices ? indices[3 * t + 1] : 3 * t + 1, i2 = indices ? indices[3 * t + 2] : 3 * t + 2;
      var p = function (i, k) { return positions[3 * i + k]; };
      var e1 = [p(i1, 0) - p(i0, 0), p(i1, 1) - p(i0, 1), p(i1, 2) - p(i0, 2)];
      var e2 = [p(i2, 0) - p(i0, 0), p(i2, 1) - p(i0, 1), p(i2, 2) - p(i0, 2)];
      var n = cross(e1, e2);
      [i0, i1, i2].forEach(function (i) { normals[3 * i] += n[0]; normals[3 * i + 1] += n[1]; normals[3 * i + 2] += n[2]; });
    }
    for (var i = 0; i < normals.length; i += 3) {
      var unit = normalize([normals[i], normals[i + 1], normals[i + 2]]);
      normals[i] = unit[0]; normals[i + 1] = unit[1]; normals[i + 2] = unit[2];
    }
    return normals;
  }

  function textureImage(json, material) {
    var info = material && material.pbrMetallicRoughness && material.pbrMetallicRoughness.baseColorTexture;
    if (!info || !json.textures || !json.textures[info.index]) return null;
    var image = json.images && json.images[json.textures[info.index].source];
    return image && image.bufferView !== undefined ? image : null;
  }

  // Triangle primitives with world-space positions and normals, colours, UVs and material.
  function loadPrimitives(gltf) {
    var json = gltf.json, primitives = [];
    meshInstances(json).forEach(function (instance) {
      json.meshes[instance.mesh].primitives.forEach(function (primitive) {
        if ((primitive.mode === undefined ? TRIANGLES : primitive.mode) !== TRIANGLES) return;
        var attributes = primitive.attributes;
        if (attributes.POSITION === undefined) return;
        var positions = readAccessor(gltf, attributes.POSITION, Float32Array);
        var indices = primitive.indices === undefined ? null : readAccessor(gltf, primitive.indices, Uint32Array).values;
        var normals = attributes.NORMAL === undefined ? computeNormals(positions.values, indices, positions.count)
          : readAccessor(gltf, attributes.NORMAL, Float32Array).values;
        transformPoints(positions.values, instance.matrix);
        transformNormals(normals, instance.matrix);
        var material = primitive.material === undefined ? null : json.materials[primitive.material];
        var pbr = (material && material.pbrMetallicRoughness) || {};
        primitives.push({
          positions: positions.values, normals: normals, count: positions.count, indices: indices,
          colors: attributes.COLOR_0 === undefined ? null : readAccessor(gltf, attributes.COLOR_0, Float32Array),
          uvs: attributes.TEXCOORD_0 === undefined ? null : readAccessor(gltf, attributes.TEXCOORD_0, Float32Array).values,
          baseColor: pbr.baseColorFactor || [1, 1, 1, 1], image: textureImage(json, material)
        });
      });
    });
    return primitives;
  }

  function bounds(primitives) {
    var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    primitives.forEach(function (primitive) {
      for (var i = 0; i < primitive.positions.length; i++) {
        var axis = i % 3, value = primitive.positions[i];
        if (value < lo[axis]) lo[axis] = value;
        if (value > hi[axis]) hi[axis] = value;
      }
    });
    if (!isFinite(lo[0])) return { center: [0, 0, 0], radius: 1 };
    var center = [0, 1, 2].map(function (k) { return (lo[k] + hi[k]) / 2; });
    var radius = Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) / 2;
    return { center: center, radius: radius > 0 ? radius : 1 };
  }

  // -- WebGL ------------------------------------------------------------------------------------------

  var VERTEX_SHADER = [
    "attribute vec3 aPosition; attribute vec3 aNormal; attribute vec4 aColor; attribute vec2 aUv;",
    "uniform mat4 uViewProjection;",
    "varying vec3 vPosition; varying vec3 vNormal; varying vec4 vColor; varying vec2 vUv;",
    "void main() {",
    "  vPosition = aPosition; vNormal = aNormal; vColor = aColor; vUv = aUv;",
    "  gl_Position = uViewProjection * vec4(aPosition, 1.0);",
    "}"
  ].join("\n");

  // A light at the eye: what faces the viewer is bright, as in dreamtext's own renders. Colours are
  // shown as stored (dreamtext writes the field's albedo in display values).
  var FRAGMENT_SHADER = [
    "precision mediump float;",
    "uniform vec4 uBaseColor; uniform sampler2D uTexture; uniform float uUseTexture; uniform vec3 uEye;",
    "varying vec3 vPosition; varying vec3 vNormal; varying vec4 vColor; varying vec2 vUv;",
    "void main() {",
    "  vec3 toEye = normalize(uEye - vPosition);",
    "  vec3 normal = normalize(vNormal);",
    "  if (dot(normal, toEye) < 0.0) normal = -normal;",
    "  vec4 base = uBaseColor * vColor;",
    "  if (uUseTexture > 0.5) base *= texture2D(uTexture, vUv);",
    "  float light = 0.3 + 0.7 * max(dot(normal, toEye), 0.0);",
    "  gl_FragColor = vec4(base.rgb * light, 1.0);",
    "}"
  ].join("\n");

  function compile(gl, type, source) {
    var shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error("shader: " + gl.getShaderInfoLog(shader));
    return shader;
  }

  function createProgram(gl) {
    var program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX_SHADER));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT_SHADER));
    gl.bindAttribLocation(program, 0, "aPosition"); // attribute 0 must always be an enabled array
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error("program: " + gl.getProgramInfoLog(program));
    var location = {};
    ["aPosition", "aNormal", "aColor", "aUv"].forEach(function (name) { location[name] = gl.getAttribLocation(program, name); });
    ["uViewProjection", "uBaseColor", "uTexture", "uUseTexture", "uEye"].forEach(function (name) { location[name] = gl.getUniformLocation(program, name); });
    return { program: program, location: location };
  }

  function arrayBuffer(gl, data) {
    var buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    return buffer;
  }

  // glTF's COLOR_0 is linear; the page shades in display (sRGB) values, as it reads baseColorTexture.
  function linearToSrgb(value) {
    value = Math.min(Math.max(value, 0), 1);
    return value <= 0.0031308 ? 12.92 * value : 1.055 * Math.pow(value, 1 / 2.4) - 0.055;
  }

  function rgba(colors, count) {
    if (colors === null) return null;
    var size = colors.size, out = new Float32Array(count * 4);
    for (var i = 0; i < count; i++) {
      for (var c = 0; c < 3; c++) out[4 * i + c] = linearToSrgb(colors.values[size * i + c]);
      out[4 * i + 3] = size === 4 ? colors.values[size * i + 3] : 1;
    }
    return out;
  }

  function Viewer(canvas) {
    this.canvas = canvas;
    this.status = canvas.parentNode.querySelector(".glb-status");
    this.draws = [];
    this.pending = false;
    canvas.dataset.state = "loading";
  }

  Viewer.prototype.fail = function (error) {
    this.canvas.dataset.state = "error";
    var message = error && error.message ? error.message : String(error);
    if (location.protocol === "file:") message += " (browsers do not load files from file:// pages: serve the folder, e.g. python3 -m http.server)";
    if (this.status) this.status.textContent = "cannot show " + this.canvas.dataset.src + ": " + message;
    console.error("dreamtext GLB viewer: " + this.canvas.dataset.src + ": " + message);
  };

  Viewer.prototype.load = function () {
    var self = this;
    return fetch(this.canvas.dataset.src)
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.arrayBuffer();
      })
      .then(function (buffer) { self.show(parseGlb(buffer)); })
      .catch(function (error) { self.fail(error); });
  };

  Viewer.prototype.show = function (gltf) {
    var canvas = this.canvas;
    var gl = canvas.getContext("webgl2", { antialias: true }) || canvas.getContext("webgl", { antialias: true });
    if (!gl) throw new Error("this browser has no WebGL");
    var wideIndices = typeof WebGL2RenderingContext !== "undefined" && gl instanceof WebGL2RenderingContext || !!gl.getExtension("OES_element_index_uint");
    this.gl = gl;
    this.shader = createProgram(gl);
    var primitives = loadPrimitives(gltf), self = this, triangles = 0;
    primitives.forEach(function (primitive) {
      var draw = {
        position: arrayBuffer(gl, primitive.positions), normal: arrayBuffer(gl, primitive.normals),
        color: primitive.colors === null ? null : arrayBuffer(gl, rgba(primitive.colors, primitive.count)),
        uv: primitive.uvs === null ? null : arrayBuffer(gl, primitive.uvs),
        baseColor: primitive.baseColor, texture: null, count: primitive.count, indices: null
      };
      if (primitive.indices !== null) {
        var wide = primitive.count > 65535;
        if (wide && !wideIndices) throw new Error("the mesh has more than 65535 vertices and this WebGL has no 32-bit indices");
        draw.indices = gl.createBuffer();
        draw.indexType = wide ? gl.UNSIGNED_INT : gl.UNSIGNED_SHORT;
        draw.count = primitive.indices.length;
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, draw.indices);
        gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, wide ? primitive.indices : new Uint16Array(primitive.indices), gl.STATIC_DRAW);
      }
      triangles += Math.floor(draw.count / 3);
      if (primitive.image !== null && primitive.uvs !== null) self.loadTexture(gltf, primitive.image, draw);
      self.draws.push(draw);
    });
    var box = bounds(primitives);
    this.center = box.center;
    this.radius = box.radius;
    this.reset();
    this.listen();
    canvas.dataset.triangles = String(triangles);
    canvas.dataset.state = "ready";
    if (this.status) this.status.textContent = triangles + " triangles · drag to orbit, scroll to zoom, double-click to reset";
  };

  Viewer.prototype.loadTexture = function (gltf, image, draw) {
    var gl = this.gl, self = this, view = gltf.json.bufferViews[image.bufferView];
    var bytes = new Uint8Array(gltf.bin.buffer, gltf.bin.byteOffset + (view.byteOffset || 0), view.byteLength);
    createImageBitmap(new Blob([bytes], { type: image.mimeType || "image/png" }))
      .then(function (bitmap) {
        draw.texture = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, draw.texture);
        // glTF puts UV (0, 0) at the image's first row, as WebGL does without flipping.
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        self.redraw();
      })
      .catch(function (error) { self.fail(error); });
  };

  Viewer.prototype.reset = function () {
    this.azimuth = 0;
    this.polar = START_POLAR;
    this.distance = this.radius / Math.sin(FOVY / 2) * 1.1;
    this.redraw();
  };

  Viewer.prototype.listen = function () {
    var self = this, canvas = this.canvas, last = null;
    canvas.addEventListener("pointerdown", function (event) {
      last = [event.clientX, event.clientY];
      canvas.setPointerCapture(event.pointerId);
    });
    canvas.addEventListener("pointermove", function (event) {
      if (last === null) return;
      self.azimuth -= (event.clientX - last[0]) * 0.01;
      self.polar = Math.min(Math.PI - 0.01, Math.max(0.01, self.polar - (event.clientY - last[1]) * 0.01));
      last = [event.clientX, event.clientY];
      self.redraw();
    });
    var release = function () { last = null; };
    canvas.addEventListener("pointerup", release);
    canvas.addEventListener("pointercancel", release);
    canvas.addEventListener("wheel", function (event) {
      event.preventDefault();
      self.distance = Math.min(self.radius * 30, Math.max(self.radius * 0.3, self.distance * Math.exp(event.deltaY * 0.001)));
      self.redraw();
    }, { passive: false });
    canvas.addEventListener("dblclick", function () { self.reset(); });
    if (typeof ResizeObserver !== "undefined") new ResizeObserver(function () { self.redraw(); }).observe(canvas);
    else window.addEventListener("resize", function () { self.redraw(); });
  };

  Viewer.prototype.redraw = function () {
    if (this.pending) return;
    this.pending = true;
    var self = this;
    requestAnimationFrame(function () { self.pending = false; self.draw(); });
  };

  Viewer.prototype.draw = function () {
    var gl = this.gl, canvas = this.canvas, ratio = window.devicePixelRatio || 1;
    var width = Math.max(1, Math.round(canvas.clientWidth * ratio)), height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    gl.viewport(0, 0, width, height);
    gl.clearColor(BACKGROUND[0], BACKGROUND[1], BACKGROUND[2], 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);

    var c = this.center, d = this.distance, s = Math.sin(this.polar);
    var eye = [c[0] + d * s * Math.sin(this.azimuth), c[1] + d * Math.cos(this.polar), c[2] + d * s * Math.cos(this.azimuth)];
    var near = Math.max(d - 2 * this.radius, d * 0.01), far = d + 2 * this.radius;
    var viewProjection = multiply(perspective(FOVY, width / height, near, far), lookAt(eye, c));
    var shader = this.shader, at = shader.location;
    gl.useProgram(shader.program);
    gl.uniformMatrix4fv(at.uViewProjection, false, new Float32Array(viewProjection));
    gl.uniform3fv(at.uEye, new Float32Array(eye));
    gl.uniform1i(at.uTexture, 0);
    this.draws.forEach(function (draw) {
      var attribute = function (location, buffer, size, fallback) {
        if (location < 0) return;
        if (buffer === null) {
          gl.disableVertexAttribArray(location);
          gl.vertexAttrib4fv(location, new Float32Array(fallback));
          return;
        }
        gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
        gl.enableVertexAttribArray(location);
        gl.vertexAttribPointer(location, size, gl.FLOAT, false, 0, 0);
      };
      attribute(at.aPosition, draw.position, 3);
      attribute(at.aNormal, draw.normal, 3);
      attribute(at.aColor, draw.color, 4, [1, 1, 1, 1]);
      attribute(at.aUv, draw.uv, 2, [0, 0, 0, 1]);
      gl.uniform4fv(at.uBaseColor, new Float32Array(draw.baseColor));
      gl.uniform1f(at.uUseTexture, draw.texture === null ? 0 : 1);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, draw.texture);
      if (draw.indices === null) {
        gl.drawArrays(gl.TRIANGLES, 0, draw.count);
      } else {
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, draw.indices);
        gl.drawElements(gl.TRIANGLES, draw.count, draw.indexType, 0);
      }
    });
  };

  function start() {
    var canvases = Array.prototype.slice.call(document.querySelectorAll("canvas.glb-viewer[data-src]"));
    window.dreamtextGlbViewers = canvases.map(function (canvas) {
      var viewer = new Viewer(canvas);
      viewer.load();
      return viewer;
    });
  }

  window.dreamtextGlb = { parseGlb: parseGlb, readAccessor: readAccessor };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
