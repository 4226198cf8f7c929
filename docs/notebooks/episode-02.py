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
# # Episode 02: Introduction to image data, in PyTorch
#
# Episode 02 of [Introduction to image classification with CNNs](https://carpentries-incubator.github.io/intro-image-classification-cnn/)
# opens up episode 01's `prepare_datasets()`: how image files are laid out in folders, how
# they are read into arrays, and what those arrays hold. This notebook reads the same layout
# with [cnn-torch](../../README.md), and adds what the lesson's 2024 version did with the
# arrays: the pixel values before and after scaling, the labels as one-hot rows, and whether
# the classes are balanced. Every `# Keras:` comment is the lesson's line that the PyTorch
# line below it replaces.

# %%
# Settings: the only cell to change, then run all cells.
DATASET = "shapes"  # "shapes": built in, offline | "cifar10": downloads CIFAR-10 | "cifar10-5": the
#                     lesson's five CIFAR-10 classes | "folder": your images, DATA_DIR/train/<class>/
DATA_DIR = None  # holds train/<class>/ (e.g. from cnn-torch lesson-data) or cifar-10-batches-py/ (None: data/)
LIMIT = 1250  # training images before 20% are held out to validate (None: all); shapes: 1,000 / 250, and 250 to test
SEED = 1  # the same seed repeats every number below
MY_IMAGE = None  # the path of a photo of your own (any size, PNG or JPEG); None: a new picture is drawn for you

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from PIL import Image

from cnn_torch import data
from cnn_torch import workshop as icfn
from cnn_torch.sources.image_files import load_image
from cnn_torch.image_grids import pick, show_images
from cnn_torch.sources.lesson_data import to_float

# %% [markdown]
# ## The images, as folders of files
#
# The lesson keeps its images as one file each, in a folder per split (`train/`, `val/`,
# `test/`) holding a folder per class. The folder names are the labels: nobody has to write
# down the class of each image. With the built-in data, the next cell first writes its
# images in that layout, as PNG files under `data/`, so that the rest of the episode reads
# folders as the lesson does. With `DATASET = "folder"` it reads yours.

# %%
if DATASET == "folder":
    images_dir = DATA_DIR
else:
    train_ds, val_ds, test_ds = icfn.prepare_datasets(DATASET, DATA_DIR, limit=LIMIT, seed=SEED)
    splits = {"train": train_ds, "val": val_ds, "test": test_ds}
    images_dir = icfn.write_image_folders(splits, f"data/{DATASET}_images_small-{LIMIT}-seed{SEED}")
for split in ("train", "val", "test"):
    folders = sorted(p.name for p in (data.check_data_dir(images_dir) / split).iterdir() if p.is_dir())
    print(f"{split}/: {len(folders)} class folders: {', '.join(folders)}")

# %% [markdown]
# ## Load the images
#
# Keras's `image_dataset_from_directory` reads one split's folder per call and hands the
# images out in batches. `data.load_data("folder", ...)` reads the whole tree at once, every
# image resized to `image_size` the way Keras resizes it, and keeps every image in memory:
# at 32x32 pixels a thousand images take 3 MB. The training images come back shuffled,
# seeded as Keras seeds its shuffle; the val and test images keep their folders' order.

# %%
# Keras: train_ds = tf.keras.utils.image_dataset_from_directory(
#            "../data/cifar10_images_small/train",
#            image_size = (32, 32),
#            batch_size = 32,
#            shuffle = True,
#            seed = 32
#        )
images_small = data.load_data("folder", images_dir, image_size=(32, 32), seed=32)
train_images, train_labels = images_small.train_images, images_small.train_labels
# Keras: print(train_ds)
print(images_small.split_sources)
print("train_images:", tuple(train_images.shape), train_images.dtype, " train_labels:", tuple(train_labels.shape))

# %% [markdown]
# The class names are the folder names, sorted, as Keras sorts them: class 0 is the first
# folder in alphabetical order.

# %%
# Keras: class_names = train_ds.class_names
class_names = images_small.class_names
# Keras: print(class_names)
print(class_names)

# %% [markdown]
# ## What one batch holds
#
# Keras hands out a batch as (batch, height, width, channels); PyTorch puts the channels
# first: (batch, channels, height, width). The numbers are the same, in another order.

# %%
# Keras: for images, labels in train_ds.take(1):
images, labels = train_images[:32], train_labels[:32]
# Keras:     print("Train images batch shape:", images.shape)
print("Train images batch shape:", tuple(images.shape))  # Keras: (32, 32, 32, 3)
# Keras:     print("Train labels batch shape:", labels.shape)
print("Train labels batch shape:", tuple(labels.shape))

# %% [markdown]
# Each pixel is three whole numbers from 0 to 255, red, green and blue. Keras turns them
# into floats straight away; here they stay `uint8`, a quarter of the memory.

# %%
# Keras: for images, labels in train_ds.take(1):
# Keras:     print("Data type: ", images.dtype)
print("Data type: ", images.dtype)
# Keras:     print("Pixel value range:", images[0].numpy().min(), images[0].numpy().max())
print("Pixel value range:", images[0].min().item(), images[0].max().item())

# %% [markdown]
# Images are data: here is the top-left corner of the first image, 6x6 pixels of its red
# channel, as numbers and as a picture.

# %%
corner = images[0, 0, :6, :6]  # channel 0 (red), rows 0-5, columns 0-5
print(corner)
plt.figure(figsize=(2.5, 2.5))
plt.imshow(corner, cmap="Reds_r", vmin=0, vmax=255)
plt.axis("off")
plt.show()

# %% [markdown]
# ## Scaling the pixels to [0, 1]
#
# Networks learn better from small inputs than from numbers up to 255, so the lesson scales
# every pixel to [0, 1]. The 2026 lesson says it does this inside the model, but none of its
# models has a layer that does it (Keras's `Rescaling(1./255)`), so its images reach the
# network as 0-255. The lesson's 2024 version divides by 255 itself, and so does `fit` here,
# one batch at a time: `to_float` is that division.

# %%
# Keras: train_images = train_images / 255.0
scaled = to_float(images)
print("BEFORE scaling: min", images.min().item(), " max", images.max().item(),
      " mean", round(images.float().mean().item(), 1))
print("AFTER  scaling: min", scaled.min().item(), " max", scaled.max().item(),
      " mean", round(scaled.mean().item(), 3))

# %% [markdown]
# ## Labels: class numbers or one-hot rows
#
# A label is the number of a class. The lesson's 2024 version turned each into a one-hot row:
# a 1 in the class's column and 0 elsewhere. `fit` takes either; with class numbers the loss
# is Keras's sparse categorical cross-entropy, with one-hot rows its categorical
# cross-entropy, and the two give the same numbers.

# %%
# Keras: train_labels = keras.utils.to_categorical(train_labels, len(class_names))
train_labels_one_hot = torch.nn.functional.one_hot(train_labels, len(class_names))
print("train_labels before one-hot encoding:", train_labels[:3].tolist())
print("train_labels after one-hot encoding:")
print(train_labels_one_hot[:3])

# %% [markdown]
# ## Are the classes balanced?
#
# A one-hot column sums to the number of images of its class. A class with far fewer images
# than the others would be learned less well, and accuracy alone would hide it.

# %%
# Keras: print('Number of images in each class:\n', train_labels.sum(axis=0))
images_per_class = pd.Series(train_labels_one_hot.sum(dim=0).tolist(), index=class_names, name="images")
print("Number of training images:", len(train_labels))
images_per_class.plot.bar(title="training images per class", figsize=(6, 2.5));

# %% [markdown]
# And 25 of the training images with their classes (the lesson's `imshow` grid).

# %%
chosen = pick(train_labels, 25, seed=SEED)  # 25 images, the classes taking turns
show_images(train_images[chosen], train_labels[chosen], class_names, "training images");

# %% [markdown]
# ## Challenge: the test split
#
# The test images are read as the training images were, but not shuffled. How many are
# there, and how many of each class? (The lesson leaves the last question open: `bincount`
# counts the labels of each class.)

# %%
# Keras: test_ds = tf.keras.utils.image_dataset_from_directory(
#            "../data/cifar10_images_small/test",
#            image_size = (32, 32),
#            batch_size = 32,
#            shuffle = False,
#        )
test_images, test_labels = images_small.test_data
# Keras: print("Test class names: ", test_ds.class_names)
print("Test class names: ", images_small.class_names)
# Keras: for images, labels in test_ds.take(1):
#            print("Test images batch shape:", images.shape)
#            print("Test labels batch shape:", labels.shape)
print("Test images batch shape:", tuple(test_images[:32].shape))
print("Test labels batch shape:", tuple(test_labels[:32].shape))
print("Total number of test images:", len(test_labels))
test_counts = torch.bincount(test_labels, minlength=len(class_names))
print("Images in each class:", pd.Series(test_counts.tolist(), index=class_names).to_dict())

# %% [markdown]
# ## An image of your own
#
# A photo of your own is larger, and rarely square. To classify it, the model must see it as
# it saw the training images: the same size, the same colours, the same scaling.
# `load_image` reads any PNG or JPEG and resizes it exactly as `load_data` resized the
# training images (bilinear; the lesson's 2024 `keras.utils.load_img(target_size=...)` would
# pick the nearest pixel instead, a blockier image than the model learned from).

# %%
if MY_IMAGE is None:
    MY_IMAGE = icfn.example_image_file("data/my_image.png")  # a picture none of the data sets holds
# Keras: new_img_pil = keras.utils.load_img(path=new_img_path)
new_img_pil = Image.open(MY_IMAGE).convert("RGB")
# Keras: print('Image size:', new_img_pil.size)
print("Image size:", new_img_pil.size)  # (width, height), as PIL gives it
# Keras: new_img_pil_small = keras.utils.load_img(path=new_img_path, target_size=(32,32))
new_img_small = load_image(MY_IMAGE, image_size=(32, 32))
print("Resized image:", tuple(new_img_small.shape), new_img_small.dtype)  # (channels, height, width)
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(new_img_pil)
axes[0].set_title("your image")
axes[1].imshow(new_img_small.permute(1, 2, 0))
axes[1].set_title("what the model sees: 32x32")
for ax in axes:
    ax.axis("off")
plt.show()
