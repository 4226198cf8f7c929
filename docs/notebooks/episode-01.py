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
# # Episode 01: Introduction to deep learning, in PyTorch
#
# The first episode of the Carpentries lesson
# [Introduction to image classification with CNNs](https://carpentries-incubator.github.io/intro-image-classification-cnn/)
# runs the whole workflow once, quickly, before the later episodes open each step up: load
# images, build a small convolutional neural network (CNN), train it for one epoch, let it
# classify one test image, and save it. This notebook does the same with
# [cnn-torch](../../README.md) and PyTorch. Above every PyTorch line stands the lesson's Keras
# line it replaces, as a comment that starts with `# Keras:`.
#
# Run it from the clone (`pip install -e ".[notebook]"`, then `jupyter lab docs/notebooks/`), or
# open `episode-01.py`, the same notebook as a plain script with `# %%` cells, in Spyder or
# VS Code. The built-in data needs no network; the first code cell switches to CIFAR-10, the
# lesson's five CIFAR-10 classes, or a folder of your own images.

# %%
# Settings: the only cell to change, then run all cells.
DATASET = "shapes"  # "shapes": built in, offline | "cifar10": downloads CIFAR-10 | "cifar10-5": the
#                     lesson's five CIFAR-10 classes | "folder": your images, DATA_DIR/train/<class>/
DATA_DIR = None  # holds train/<class>/ (e.g. from cnn-torch lesson-data) or cifar-10-batches-py/ (None: data/)
LIMIT = 1250  # training images before 20% are held out to validate (None: all); shapes: 1,000 / 250, and 250 to test
SEED = 1  # the same seed repeats every number below

# %% [markdown]
# ## Load the packages

# %%
# Keras: import tensorflow as tf # neural network
import torch  # neural network

# Keras: import matplotlib.pyplot as plt # for plotting
import matplotlib.pyplot as plt  # for plotting

# Keras: import icwithcnn_functions as icfn # pre-defined helpers
from cnn_torch import workshop as icfn  # pre-defined helpers (cnn_torch/workshop.py)
from cnn_torch import fit, models, predict, probabilities
from cnn_torch.checkpoints import save_model

torch.manual_seed(SEED);  # the model's first weights are random: this draws the same ones every time

# %% [markdown]
# ## Step 3. Prepare the data
#
# The lesson's helper reads three folders of CIFAR-10 images: 1,000 to train on, 250 to
# validate with while training, and 250 to test with at the end. `icfn.prepare_datasets`
# gives the same three splits of the data chosen above. Each split holds all its images at
# once, as PyTorch tensors: `images` of shape (number, channels, height, width) with whole
# numbers 0-255 (`uint8`), and `labels`, one class number per image.

# %%
# Keras: class_names = ['airplane', 'bird', 'cat', 'dog', 'truck']
# Keras: train_ds, val_ds, test_ds = icfn.prepare_datasets()
train_ds, val_ds, test_ds = icfn.prepare_datasets(DATASET, DATA_DIR, limit=LIMIT, seed=SEED)
class_names = train_ds.class_names  # the lesson types its five class names; here they come with the data
print(f"{len(train_ds)} training, {len(val_ds)} validation and {len(test_ds)} test images")
print("classes:", class_names)

# %% [markdown]
# Look at the data before anything else: nine training images with their classes.
# `imshow` wants the colour channels last, (height, width, 3), and PyTorch keeps them first,
# (3, height, width): `permute(1, 2, 0)` moves them.

# %%
# Keras: fig, axes = plt.subplots(figsize=(5,5))
plt.figure(figsize=(5, 5))
# Keras: for images, labels in train_ds.take(1):
images, labels = train_ds.images[:32], train_ds.labels[:32]  # a batch of 32, as train_ds.take(1) hands out
# Keras:     for i in range(9):
for i in range(9):
    # Keras:     ax = plt.subplot(3, 3, i + 1)
    ax = plt.subplot(3, 3, i + 1)
    # Keras:     plt.imshow(images[i].numpy().astype("uint8"))
    plt.imshow(images[i].permute(1, 2, 0))
    # Keras:     plt.title(class_names[labels[i]])
    plt.title(class_names[labels[i]])
    # Keras:     plt.axis("off")
    plt.axis("off")
# Keras: plt.show()
plt.show()

# %% [markdown]
# ## Step 4. Build a new architecture
#
# `model_intro` is the lesson's first CNN: one convolutional layer of 16 filters, a pooling
# layer, and a dense layer with one output per class. Episode 03 builds it layer by layer.
# One difference: the lesson's last layer turns the outputs into probabilities (softmax);
# this one leaves them as raw scores ("logits"), because PyTorch's loss applies the softmax
# itself. `probabilities()` applies it when we want to read them.

# %%
# Keras: model_intro = create_model_intro()
model_intro = models.model_intro(num_classes=len(class_names))

# %% [markdown]
# ## Step 5. Choose a loss function and an optimizer
#
# Keras's `compile` writes down the choices; PyTorch has no such step. The loss is an
# object, the optimizer is named when training starts (`fit` builds Keras's Adam, with
# Keras's defaults), and `fit` always reports the accuracy.

# %%
# Keras: model_intro.compile(optimizer = "adam",
#                            loss = "sparse_categorical_crossentropy",
#                            metrics =["accuracy"])
optimizer = "adam"
loss_fn = torch.nn.CrossEntropyLoss()  # sparse categorical cross-entropy, on the logits

# %% [markdown]
# ## Step 6. Train the model
#
# One pass over the training images: one **epoch**, in batches of 32 images, each batch one
# step of the optimizer. `fit` prints one line for it, as Keras does.
#
# The lesson shows a first loss near 58. Its images go into the model as numbers from 0 to
# 255: it says they are rescaled inside the model, but its model has no layer that does it.
# Here `fit` divides every batch by 255 on its way into the model (the lesson's intent), so the
# loss starts near that of a blind guess (2.3 for ten classes, 1.6 for five) and falls from there.

# %%
# Keras: history_intro = model_intro.fit(x = train_ds)
history_intro = fit(model_intro, loss_fn, optimizer, train_ds.images, train_ds.labels, seed=SEED)

# %% [markdown]
# ## Step 7. Classify one image
#
# The model gives one score per class; the softmax turns the scores into probabilities that
# add up to 1, and the class with the highest probability is the prediction.

# %%
# Keras: for images, labels in test_ds.take(1):
#            first_image = images[0]
#            first_label = labels[0]
first_image, first_label = test_ds.images[0], test_ds.labels[0]

# Keras: prediction = model_intro.predict(tf.expand_dims(first_image, axis=0))
prediction = probabilities(predict(model_intro, first_image.unsqueeze(0)))  # a batch of one image
# Keras: print("Predict:", prediction)
print("Predict:", prediction)

# Keras: predicted_label = tf.argmax(prediction[0])
predicted_label = prediction[0].argmax()
# Keras: print("Predicted class:", class_names[predicted_label])
print("Predicted class:", class_names[predicted_label])
# Keras: print("True class:", class_names[first_label])
print("True class:", class_names[first_label])

# %% [markdown]
# Was it right? The lesson draws `test_images[0]` here, a name its episode never defines (its
# own script draws `first_image`); and since its `test_ds` is shuffled again every time it is
# read, a second read would not give the same image anyway. Here the test split keeps its
# order, and this is the image that was classified.

# %%
# Keras: plt.imshow(test_images[0])
plt.imshow(first_image.permute(1, 2, 0))
# Keras: plt.title('Predicted:' + class_names[predicted_label])
plt.title("Predicted: " + class_names[predicted_label])
# Keras: plt.axis("off")
plt.axis("off")
# Keras: plt.show()
plt.show()

# %% [markdown]
# After one epoch the model is right about some images and wrong about many: it has seen each
# training image once. The next episodes look at the data, the model and the training in
# turn, and train for longer.
#
# ## Step 10. Share the model
#
# `save_model` writes the weights and what it takes to build the model again (its name, its
# settings, the class names) into one file; episode 06 loads one back. It creates the
# `models/` folder when needed, as the lesson's `os.makedirs` does.

# %%
# Keras: import os
# Keras: os.makedirs("models", exist_ok=True)
# Keras: model_intro.save('models/model_intro.keras')
save_model(model_intro, "models/model_intro.pt", class_names);
