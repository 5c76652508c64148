"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) and its variants.

Variants are arguments, not copies:

  python main.py --config=configs/alexnet.py --workdir=runs/alexnet
      The paper's two-column net on ILSVRC-2012 (batch 128, lr 0.01 divided by 10 on plateaus,
      ~90 epochs). Should reach the paper's 40.7% top-1 / 18.2% top-5 error (10 views).

  python main.py --config=configs/alexnet.py:one_weird_trick --workdir=runs/owt
      The single-column net of "One weird trick" (Krizhevsky 2014) that torchvision ships
      (61,100,840 parameters, no LRN). torchvision reports 43.5% / 20.9% error (centre crop).

  python main.py --config=configs/alexnet.py:one_column --workdir=runs/one_column
      The paper's one-GPU ablation net (run 145-half). Paper: +1.7 / +1.2 points of error.

  python main.py --config=configs/alexnet.py:quickstart --workdir=runs/quickstart
      A quarter-width net on the built-in miniature ImageNet (10 classes), on a 2-core CPU:
      under 3 minutes, 1.7% top-1 error with 10 views (98.3% accuracy) on its 300 held-out
      images, 3.0% from the centre crop (seeds 1 and 2: 3.3% and 2.7%); at least 80% accuracy
      is expected after 5 epochs. `quickstart` below says
      what it changes from the paper and why.

Any field can be overridden on the command line: `--config.model.lrn=False`.

The config is built from parts, one function per group of fields (model, data, mesh, training,
optimizer, schedule, evaluation, checkpoint, reporting) and one per variant, each variant changing
the paper's config. Which values each field takes is checked once per start by
alexnet_jax/config_schema.py.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the config for `arg` (None: the paper's net on ILSVRC-2012)."""
  variant = VARIANTS.get(arg or 'paper')
  if variant is None:
    raise ValueError(
        f'Unknown config variant {arg!r}; use one of: paper, one_weird_trick, one_column, '
        'quickstart (e.g. --config=configs/alexnet.py:quickstart).')
  config = paper_config()
  variant(config)
  return config


def paper_config() -> ml_collections.ConfigDict:
  """The paper's net on ILSVRC-2012, trained as the paper did."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = model()
  config.data = data()
  config.mesh = mesh()
  training(config)
  config.optimizer = optimizer()
  config.schedule = schedule()
  config.eval = evaluation()
  config.checkpoint = checkpoint()
  reporting(config)
  return config


# ---------------------------------------------------------------------------------------- model
def model() -> ml_collections.ConfigDict:
  """The net: its architecture, normalization, dropout, initialization and kernels."""
  m = ml_collections.ConfigDict()
  # 'paper': the two-column net of the paper (or its one-column ablation with columns=1).
  # 'one_weird_trick': the single-column net torchvision ships (64-192-384-256-256, no LRN
  # whatever model.lrn says, dropout on the inputs of fc6 and fc7).
  m.variant = 'paper'
  m.columns = 2            # 2: the paper's net; 1: the paper's one-GPU ablation net
  m.width = 1.0            # multiplies every conv and fc width (not fc8); for small runs
  m.num_classes = 1000
  # 224: the original code's crop, with conv1 running off the bottom/right edge into zeros
  # (padding 0 top/left, 3 bottom/right). 227: Caffe's crop, no padding. Other sizes use the
  # 224 rule (pad so that the last stride-4 window fits).
  m.input_size = 224
  m.activation = 'relu'    # 'relu' | 'tanh'
  lrn(m)
  m.overlap_pool = True    # True: 3x3 stride 2 (paper); False: 2x2 stride 2 (ablation)
  m.dropout = 0.5          # rate in fc6 and fc7; 0 disables
  # 'paper': train masks without rescaling, test multiplies by (1 - rate) (the original code).
  # 'inverted': train divides kept units by (1 - rate), test is the identity.
  m.dropout_mode = 'paper'
  # 'paper': weights N(0, 0.01). 'code': as 'paper' but std 0.03 in conv3-conv5 (the original
  # code). 'he': He-normal weights and fc8 N(0, 0.01) (not the paper; for small nets).
  m.init = 'paper'
  m.weight_std = 0.01
  m.conv345_std = 0.03     # used by init='code'
  # Bias of conv2, conv4, conv5, fc6, fc7 (others start at 0). Paper: 1. Caffe later used 0.1:
  # from scratch, bias 1 can leave the net at loss ln(1000).
  m.bias_init = 1.0
  kernels(m)
  return m


def lrn(m: ml_collections.ConfigDict) -> None:
  """Local response normalization (PAPER.md): b = a / (k + alpha' * sum a^2)^beta."""
  m.lrn = True
  m.lrn_size = 5
  m.lrn_k = 2.0
  m.lrn_alpha = 1e-4
  m.lrn_beta = 0.75
  # 'code': alpha' = alpha / size, as the original code ran it (2e-5); 'paper': alpha' = alpha.
  m.lrn_alpha_convention = 'code'
  # 'paper': conv -> ReLU -> LRN -> pool in layers 1 and 2 (the paper's text).
  # 'code': layer 1 conv -> LRN -> pool -> ReLU (LRN sees pre-ReLU values); layer 2 as the paper.
  m.lrn_placement = 'paper'


def kernels(m: ml_collections.ConfigDict) -> None:
  """How the model's layers run: same parameters, same numbers, whichever is chosen."""
  # How per-column ("own column") convolutions run on one device: 'split' (one ordinary conv per
  # column), 'grouped' (one conv with feature_group_count=columns), 'auto' (split on CPU, where
  # XLA's grouped convolution is ~3x slower; grouped elsewhere).
  m.conv_impl = 'auto'
  # conv1 (11x11, stride 4): 'conv' (XLA convolution), 'im2col' (strided patches + one matmul;
  # faster only where YNNPACK runs the convolutions, see alexnet_jax/xla_flags.py), 'auto'
  # (conv). Same parameters, same numbers.
  m.conv1_impl = 'auto'
  # whose kernels the model runs: 'auto' (the platform running), 'cpu', 'gpu', 'tpu'
  # (model/kernels.py)
  m.platform = 'auto'
  m.dtype = 'float32'      # compute dtype: 'float32' | 'bfloat16' (parameters stay float32)


# ----------------------------------------------------------------------------------------- data
def data() -> ml_collections.ConfigDict:
  """The dataset, its stored squares, the preprocessing and the training order."""
  d = ml_collections.ConfigDict()
  # 'imagenet2012': ILSVRC-2012 from the manual download (docs/data.md says where the tars go).
  # 'mini_imagenet': the built-in miniature ImageNet, made offline by the same builder.
  # 'imagenette': the 10-class ImageNet subset TFDS downloads. 'image_folder': `folder` below.
  d.dataset = 'imagenet2012'
  d.tfds_name = ''         # TFDS builder; '' = the dataset's own ('imagenette/full-size-v2', ...)
  d.data_dir = ''          # TFDS data dir; '' = TFDS's default (~/tensorflow_datasets)
  d.manual_dir = ''        # where ILSVRC2012_img_*.tar are; '' = <data_dir>/downloads/manual
  d.folder = ''            # image_folder: <folder>/<split>/<class>/<image>
  d.train_split = 'train'  # TFDS split spec; slices work ('train[:90%]')
  d.eval_split = 'validation'
  squares(d)
  preprocessing(d)
  reading(d)
  d.mini = mini_imagenet()
  return d


def squares(d: ml_collections.ConfigDict) -> None:
  """The stored squares every run reads."""
  # The paper's dataset, made once (python -m alexnet_jax.data.prepare): every image rescaled so
  # its shorter side is resize_size, its central resize_size square stored as a JPEG of
  # squares_quality in squares_dir ('' = <data_dir>/alexnet_jax_squares). Training decodes only
  # each crop's window of it; the crop size is the model's input_size (224; 227 Caffe-style).
  d.resize_size = 256
  d.resize_method = 'bilinear'  # tf.image.resize method, used when the squares are made
  d.antialias = True       # low-pass before downscaling (tf.image.resize antialias)
  # 90 (4:2:0 chroma): mean absolute error 2.6 (0-255 units) against the exact float rescale on
  # ImageNet-sized photographs; 95 gains 0.3 for 46% more bytes and a slower decode; 4:4:4
  # chroma gains 0.5 for 32% more bytes and a slower decode (bench/RESULTS.md, docs/data.md).
  d.squares_quality = 90
  d.squares_dir = ''
  # 'jpeg': the squares as JPEGs (~17-20 KB each on ImageNet; ILSVRC-2012 train ~25 GB); the
  # host decodes each crop's window. 'raw': the same squares as their uint8 pixels (196 KB each
  # at 256; ILSVRC-2012 train ~252 GB): the host only gathers whole squares into the batch and
  # the crop and mirror run on the device, for hosts whose cores cannot decode as fast as their
  # accelerators train (README, "CPU cores needed per accelerator"). The same crops either way.
  d.squares_format = 'jpeg'


def preprocessing(d: ml_collections.ConfigDict) -> None:
  """Crops, mirrors, mean, colour noise and scale: what turns a stored square into an input."""
  d.train_crop = 'random'  # 'random': the paper's random crop; 'center': no translation
  d.mirror = True          # random horizontal mirror in training (paper)
  # Mean subtraction, colour noise and input scale run on the device, on the uint8 crops.
  # Mean: 'image' = the per-pixel mean image of the training split (paper), its central crop for
  # every crop and view (the original code); 'channel' = per-channel means; 'none'. 'image'
  # needs the stats file (made with the squares; again: python -m alexnet_jax.data.stats).
  d.mean = 'image'
  # RGB 0-255 means for mean='channel'; the paper's ImageNet values. None: the stats file's.
  d.channel_mean = (127.30, 119.72, 104.91)
  d.stats_dir = ''         # where stats files live; '' = <data_dir>/alexnet_jax_stats
  d.stats_max_examples = 0  # examples the stats command reads (0: the whole training split)
  # PCA colour noise: 'code' = the original code's ImageNet PCA (paper); 'fb_resnet' = the
  # fb.resnet.torch constants (0-1 scale variances, about 2x weaker); 'stats' = the PCA in this
  # dataset's stats file; 'none'.
  d.pca_noise = 'code'
  d.pca_std = 0.1          # std of the per-image, per-component noise coefficients (paper)
  d.input_scale = 1.0      # images are (0-255 RGB - mean) * input_scale; small nets like ~1/60
  # A JPEG that ends early keeps its decoded rows (the rest is grey) rather than stop the run.
  # A file nothing can be decoded from keeps its place (so batches stay a function of the
  # step): in training as a weight-0 placeholder, in evaluation as a black image (an error).
  d.truncated_jpeg_fraction = 0.0  # least fraction of lines that must decode (0: any)


def reading(d: ml_collections.ConfigDict) -> None:
  """The training order and how the stored files are read."""
  # Training order: each process's share of the split is cut into chunks of chunk_size examples
  # (positions in the stored files, so a resumed run seeks there instead of reading an epoch);
  # every epoch shuffles the chunk order, reads window_chunks chunks interleaved and shuffles
  # them with a buffer of shuffle_buffer encoded images (memory: ~30 KB each at 256x256).
  d.chunk_size = 1024
  d.window_chunks = 16
  d.shuffle_buffer = 8192
  d.cache = 'none'         # 'memory': keep this process's encoded split in RAM (small datasets)
  d.threads = 0            # tf.data private thread pool size; 0 = TensorFlow's default
  d.parallel_calls = -1    # parallel decodes per process (and when making); -1 = autotune
  d.prefetch = 4           # batches prepared ahead
  # How the training split is divided for reading: 0 = one shard per process. A fixed number
  # (a multiple of the process count) makes every step's global batch the same on any number
  # of processes, so a run can move between host counts and reproduce exactly.
  d.shards = 0


def mini_imagenet() -> ml_collections.ConfigDict:
  """The built-in miniature ImageNet (dataset='mini_imagenet')."""
  mini = ml_collections.ConfigDict()
  mini.num_classes = 10  # the first N synsets of TFDS's ImageNet labels: labels 0..N-1
  mini.images_per_class = 300
  mini.min_side = 80     # image sides are uniform in [min_side, max_side] pixels
  mini.max_side = 220
  mini.jpeg_quality = 90
  mini.seed = 0
  return mini


# ---------------------------------------------------------------------------------- parallelism
def mesh() -> ml_collections.ConfigDict:
  """How the devices are laid out: model replicas of one or two devices, side by side."""
  p = ml_collections.ConfigDict()
  p.model = 0              # devices per model replica: 1 or 2 (= columns); 0: columns if possible
  p.data = -1              # data-parallel size; -1: all remaining devices
  return p


# ------------------------------------------------------------------------------------- training
def training(config: ml_collections.ConfigDict) -> None:
  """The batch and the run's length (top-level fields)."""
  config.batch_size = 128  # global batch, summed over all devices and hosts
  config.num_epochs = 90.0  # the logged run stopped at epoch 91
  config.num_steps = 0      # if > 0, overrides num_epochs


def optimizer() -> ml_collections.ConfigDict:
  """The update rule (alexnet_jax/train/optim.py)."""
  o = ml_collections.ConfigDict()
  o.name = 'paper'          # 'paper': lr inside the momentum buffer; 'optax_sgd': optax.sgd
  o.learning_rate = 0.01
  o.momentum = 0.9
  o.weight_decay = 5e-4     # scaled by the learning rate, as in the paper
  o.bias_lr_multiplier = 1.0  # original code: 2.0
  o.bias_weight_decay = True  # original code: False
  return o


def schedule() -> ml_collections.ConfigDict:
  """The learning rate over the run."""
  s = ml_collections.ConfigDict()
  # 'plateau': divide by `factor` when validation top-1 error has not improved for `patience`
  # evaluations, at most `max_reductions` times (what the paper did); 'steps': at the
  # boundaries (epochs, or steps when boundaries_epochs is empty); 'cosine'; 'constant'.
  s.name = 'plateau'
  s.factor = 0.1
  s.patience = 3
  s.max_reductions = 3
  s.min_delta = 0.0         # improvement (in %) that counts
  s.boundaries_epochs = (25, 51, 79)  # the logged run's drops
  s.boundaries_steps = ()
  s.warmup_epochs = 0.0
  s.warmup_steps = 0
  return s


def evaluation() -> ml_collections.ConfigDict:
  """When and how the validation split is evaluated (config.eval)."""
  e = ml_collections.ConfigDict()
  e.every_epochs = 1.0      # evaluate every this many epochs (0: only at the end) ...
  e.every_steps = 0         # ... or every this many steps, if > 0
  e.views = 1               # views during training: 1 (centre crop) or 10
  e.final_views = (1, 10)   # views at the end of training and in --mode=eval
  e.batch_size = 0          # 0: the training batch size
  return e


def checkpoint() -> ml_collections.ConfigDict:
  """How often checkpoints are written and which are kept."""
  c = ml_collections.ConfigDict()
  c.every_steps = 1000
  c.keep = 3                # the last K checkpoints ...
  c.keep_best = 1           # ... and the best by validation error
  c.async_save = True
  return c


def reporting(config: ml_collections.ConfigDict) -> None:
  """What the run prints and records (top-level fields)."""
  config.log_every_steps = 50
  config.progress = 'auto'  # 'bar' (terminal), 'lines', 'auto' (bar on a terminal), 'none'
  config.allow_config_change = False  # allow a workdir's run to continue with another config


# ------------------------------------------------------------------------------------- variants
def paper(config: ml_collections.ConfigDict) -> None:
  """The paper's two-column net: the parts above as they are."""
  del config


def one_weird_trick(config: ml_collections.ConfigDict) -> None:
  """The single-column net of "One weird trick" (Krizhevsky 2014), as torchvision ships it."""
  m = config.model
  m.variant = 'one_weird_trick'
  m.columns = 1
  m.lrn = False  # the variant has no LRN anyway; this keeps the recorded config saying so


def one_column(config: ml_collections.ConfigDict) -> None:
  """The paper's one-GPU ablation net (run 145-half)."""
  config.model.columns = 1


def quickstart(config: ml_collections.ConfigDict) -> None:
  """A quarter-width net at 112x112 on the built-in miniature ImageNet (10 classes).

  Departs from the paper where a small net on a CPU needs it: He-normal init with zero biases
  (the paper's N(0, 0.01) with biases 1 stays at chance at this width: 91% top-1 error after 5
  epochs, measured with `--config.model.init=paper --config.model.bias_init=1.0`), inputs scaled
  to unit size for that init, and 112-pixel inputs (224 at quarter width is ~4x slower per image
  and did not learn within the time budget in a calibration run).
  """
  m = config.model
  m.width = 0.25
  m.num_classes = 10
  m.input_size = 112
  m.init = 'he'
  m.bias_init = 0.0
  d = config.data
  d.dataset = 'mini_imagenet'
  d.data_dir = '~/.cache/alexnet_jax/mini_imagenet'
  # The builder labels val-tar files by position against the 1000-synset labels file, so a
  # 10-class validation set is a held-out slice of train (docs/data.md).
  d.train_split = 'train[:90%]'
  d.eval_split = 'train[90%:]'
  d.resize_size = 128      # half the paper's 256, for the 112-pixel crops
  d.cache = 'memory'       # ~20 MB of 128x128 JPEGs
  d.shuffle_buffer = 4096
  d.input_scale = 1 / 60   # He-init layers expect inputs of unit scale; 0-255 minus mean has std ~60
  config.batch_size = 64
  config.num_epochs = 25.0  # ~1,050 steps of 64
  # A short linear warm-up, then cosine: a constant 0.01 learns as fast but ends noisier.
  config.schedule.name = 'cosine'
  config.schedule.warmup_steps = 100
  config.eval.every_epochs = 5.0
  config.checkpoint.every_steps = 500


# The variants get_config takes ('' and None: the paper's).
VARIANTS = {'paper': paper, 'one_weird_trick': one_weird_trick, 'one_column': one_column,
            'quickstart': quickstart}
