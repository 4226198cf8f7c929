# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Episode 03: Build a convolutional neural network, in PyTorch
#
# Episode 03 of [Introduction to image classification with CNNs](https://carpentries-incubator.github.io/intro-image-classification-cnn/)
# builds episode 01's `model_intro` one layer at a time with Keras's functional API. PyTorch
# layers are called on tensors in the same way, so this notebook does the same with a real
# image going through, printing its shape after every layer. Then it counts the model's
# parameters by hand, and looks at what the untrained model does to an image: its filters
# and its feature maps (episode 05 looks again after training). Every `# Keras:` comment is
# the lesson's line that the PyTorch line below it replaces.

# %%
# Settings: the only cell to change, then run all cells.
DATASET = "shapes"  # "shapes": built in, offline | "cifar10": downloads CIFAR-10 | "cifar10-5": the
#                     lesson's five CIFAR-10 classes | "folder": your images, DATA_DIR/train/<class>/
DATA_DIR = None  # holds train/<class>/ (e.g. from cnn-torch lesson-data) or cifar-10-batches-py/ (None: data/)
LIMIT = 1250  # training images before 20% are held out to validate (None: all); shapes: 1,000 / 250, and 250 to test
SEED = 1  # the same seed repeats every number below

# %%
# Keras: import tensorflow as tf # neural network
import torch  # neural network
from torch import nn  # its layers

from cnn_torch import models
from cnn_torch import workshop as icfn
from cnn_torch.visualise import show_feature_maps, show_filters

torch.manual_seed(SEED)
train_ds, val_ds, test_ds = icfn.prepare_datasets(DATASET, DATA_DIR, limit=LIMIT, seed=SEED)
class_names = train_ds.class_names

# %% [markdown]
# ## Step 4. Build an architecture
#
# A network is a stack of layers, each taking the previous layer's output as its input:
# the input layer, hidden layers, and an output layer.
#
# ### CNN part 1: the input
#
# Keras starts from an `Input` that says the shape of one image, (height, width, channels).
# PyTorch has no input layer: each layer is told how many channels come in, and the image
# itself goes in. Here that is a real image, so we can print its shape after every layer.
# PyTorch layers work on batches, so it goes in as a batch of one: (1, channels, height, width).

# %%
# Keras: inputs_intro = tf.keras.Input(shape=(32,32,3))
inputs_intro = train_ds.images[:1] / 255.0  # a batch of one image, its pixels scaled to [0, 1]
print("input:", tuple(inputs_intro.shape))

# %% [markdown]
# ### CNN part 2: hidden layers
#
# **A convolutional layer** slides a small window (the kernel, here 3x3 pixels) over the
# image and, at every position, multiplies the pixels under it by a set of weights (a
# **filter**) and adds them up. Each filter gives one new image, a **feature map**, showing
# where the pattern it stands for is found: an edge, a colour, a texture. Its settings:
# `out_channels` (Keras: `filters`), how many filters to learn; `kernel_size`; and the
# activation applied to every output. Keras folds the activation into the layer; PyTorch
# applies it as a function (or a layer) of its own.
#
# Without padding, a 3x3 window fits 30 times across 32 pixels: the maps are 30x30.

# %%
# Keras: x_intro = tf.keras.layers.Conv2D(filters=16,
#                                        kernel_size=(3,3),
#                                        activation='relu')(inputs_intro)
conv_intro = nn.Conv2d(in_channels=3, out_channels=16, kernel_size=(3, 3))
x_intro = torch.relu(conv_intro(inputs_intro))
print("after Conv2d and ReLU:", tuple(x_intro.shape))

# %% [markdown]
# **A pooling layer** shrinks each feature map: max pooling keeps the largest value of every
# 2x2 block, so the maps are halved in height and width (30 -> 15) and the next layers see
# a wider part of the image at once.

# %%
# Keras: x_intro = tf.keras.layers.MaxPooling2D(pool_size=(2,2))(x_intro)
x_intro = nn.MaxPool2d(kernel_size=(2, 2))(x_intro)
print("after MaxPool2d:", tuple(x_intro.shape))

# %% [markdown]
# **Flatten** lays the 16 maps of 15x15 values out in one row of 3,600 numbers, the input a
# dense layer takes.

# %%
# Keras: x_intro = tf.keras.layers.Flatten()(x_intro)
x_intro = nn.Flatten()(x_intro)
print("after Flatten:", tuple(x_intro.shape))

# %% [markdown]
# ### CNN part 3: the output layer
#
# **A dense layer** (PyTorch: `Linear`) connects every input to every output: here 3,600
# numbers in, one score per class out. The lesson ends it with a softmax, which turns the
# scores into probabilities; PyTorch's loss applies the softmax itself, so the model ends
# with the raw scores ("logits") and we apply the softmax only to read probabilities.

# %%
# Keras: outputs_intro = tf.keras.layers.Dense(units=5, activation='softmax')(x_intro)
outputs_intro = nn.Linear(in_features=3600, out_features=len(class_names))(x_intro)
print("output:", tuple(outputs_intro.shape))
print("probabilities:", torch.softmax(outputs_intro, dim=1).detach().round(decimals=3))

# %% [markdown]
# ## Putting it all together
#
# Keras joins the layers into a `Model` from its input to its output. PyTorch's
# `nn.Sequential` joins them in the order they run. As a function, as the lesson's challenge
# asks (with PyTorch's channels-first `input_shape`):

# %%
# Keras: def create_model_intro(input_shape=(32,32,3), num_classes=5):
def create_model_intro(input_shape=(3, 32, 32), num_classes=5):
    channels, height, width = input_shape
    # Keras: inputs_intro = tf.keras.Input(shape=input_shape)
    # Keras: x_intro = tf.keras.layers.Conv2D(filters=16, kernel_size=(3,3), activation='relu')(inputs_intro)
    # Keras: x_intro = tf.keras.layers.MaxPooling2D(pool_size=(2,2))(x_intro)
    # Keras: x_intro = tf.keras.layers.Flatten()(x_intro)
    # Keras: outputs_intro = tf.keras.layers.Dense(units=num_classes, activation='softmax')(x_intro)
    # Keras: model_intro = tf.keras.Model(inputs = inputs_intro, outputs = outputs_intro, name = "cifar_model_intro")
    model_intro = nn.Sequential(
        nn.Conv2d(channels, 16, kernel_size=(3, 3)),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=(2, 2)),
        nn.Flatten(),
        nn.Linear(16 * ((height - 2) // 2) * ((width - 2) // 2), num_classes),  # 3,600 inputs for 32x32 images
    )
    # Keras: return model_intro
    return model_intro


# %% [markdown]
# ## Viewing the model
#
# `models.summary` prints Keras's table: each layer with the shape of its output (`None`
# stands for the batch size, which can be anything) and its number of parameters, the
# weights that training will change. `models.model_intro` is the same network, and is the
# one the other episodes use.

# %%
# Keras: model_intro = create_model_intro()
model_intro = create_model_intro(num_classes=len(class_names))
# Keras: model_intro.summary()
models.summary(model_intro, input_shape=(3, 32, 32))

# %% [markdown]
# ### Counting the parameters by hand
#
# A convolutional layer has, for each filter, one weight per pixel of the window and per
# input channel, plus one bias: (3 x 3 x 3 + 1) x 16. A dense layer has one weight per
# input and per output, plus one bias per output: (3,600 + 1) x the number of classes.
# Pooling, ReLU and Flatten have none.

# %%
conv_parameters = (3 * 3 * 3 + 1) * 16
dense_parameters = (16 * 15 * 15 + 1) * len(class_names)
print(f"Conv2d: {conv_parameters}, Linear: {dense_parameters}, total: {conv_parameters + dense_parameters}")
print("counted by PyTorch:", sum(p.numel() for p in model_intro.parameters()))
print("the lesson's model_intro:", models.count_params(models.model_intro(num_classes=len(class_names))))

# %% [markdown]
# Nearly all of them are in the dense layer. With five classes (the lesson's) that is
# 448 + 18,005 = 18,453, the total in the lesson's summary.
#
# ### Going deeper
#
# The lesson's callout repeats the convolution and pooling pair with more filters, so later
# layers can combine the simple patterns of the first into larger ones. Count its
# parameters before running the cell: the second convolution has (3 x 3 x 16 + 1) x 32, and
# its 32 maps of 6x6 leave 1,152 inputs for the dense layer.

# %%
# Keras: x_intro = tf.keras.layers.Conv2D(16, (3,3), activation='relu')(inputs_intro)
# Keras: x_intro = tf.keras.layers.MaxPooling2D((2,2))(x_intro)
# Keras: x_intro = tf.keras.layers.Conv2D(32, (3, 3), activation='relu')(x_intro)
# Keras: x_intro = tf.keras.layers.MaxPooling2D((2, 2))(x_intro)
model_deeper = nn.Sequential(
    nn.Conv2d(3, 16, kernel_size=(3, 3)),
    nn.ReLU(),
    nn.MaxPool2d(kernel_size=(2, 2)),
    nn.Conv2d(16, 32, kernel_size=(3, 3)),
    nn.ReLU(),
    nn.MaxPool2d(kernel_size=(2, 2)),
    nn.Flatten(),
    nn.Linear(32 * 6 * 6, len(class_names)),
)
models.summary(model_deeper, input_shape=(3, 32, 32))
print("by hand:", (3 * 3 * 3 + 1) * 16 + (3 * 3 * 16 + 1) * 32 + (32 * 6 * 6 + 1) * len(class_names))

# %% [markdown]
# Two convolutions, yet fewer parameters than `model_intro`: the second pooling leaves the
# dense layer far fewer inputs.
#
# ## What the model sees, before it has learned anything
#
# **The filters.** The first convolution's 16 filters are themselves tiny images, 3x3
# pixels in red, green and blue. Before training they are random: Keras's (and here,
# `models`'s) starting weights are drawn at random in a small range.

# %%
model_intro = models.model_intro(num_classes=len(class_names))
show_filters(model_intro, title="model_intro, untrained");

# %% [markdown]
# **The feature maps.** One training image, after each layer that makes maps: 16 maps of
# 30x30 after the convolution, 16 of 15x15 after the pooling, the same shapes as the
# summary's `(None, 16, 30, 30)` and `(None, 16, 15, 15)` (layers are named as the summary
# names them). Even random filters respond to edges and colours; training will make them
# respond to what tells the classes apart.

# %%
models.summary(model_intro)
show_feature_maps(model_intro, train_ds.images[0], class_names, train_ds.labels[0], title="model_intro, untrained");

# %% [markdown]
# The model can now turn an image into one score per class, but its weights are random, so
# its predictions are guesses. Episode 04 trains it.
