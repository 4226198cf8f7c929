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
# # Episode 06: Share a convolutional neural network, and next steps, in PyTorch
#
# The last episode of [Introduction to image classification with CNNs](https://carpentries-incubator.github.io/intro-image-classification-cnn/)
# saves the best model to a file, loads it back as someone else would, and uses it to
# classify an image. This notebook does the same with [cnn-torch](../../README.md), with an
# image of your own, and shows which of its pixels the model looked at. Every `# Keras:`
# comment is the lesson's line that the PyTorch line below it replaces.

# %%
# Settings: the only cell to change, then run all cells.
DATASET = "shapes"  # "shapes": built in, offline | "cifar10": downloads CIFAR-10 | "cifar10-5": the
#                     lesson's five CIFAR-10 classes | "folder": your images, DATA_DIR/train/<class>/
DATA_DIR = None  # holds train/<class>/ (e.g. from cnn-torch lesson-data) or cifar-10-batches-py/ (None: data/)
LIMIT = 1250  # training images before 20% are held out to validate (None: all); shapes: 1,000 / 250, and 250 to test
EPOCHS = 10  # for a model to share, when episode 05's best is not there to load
SEED = 1  # the same seed repeats every number below
MY_IMAGE = None  # the path of a photo of your own (any size, PNG or JPEG); None: a new picture is drawn for you

# %%
from pathlib import Path

import pandas as pd
import torch

from cnn_torch import fit, models, predict, probabilities
from cnn_torch import workshop as icfn
from cnn_torch.checkpoints import load_checkpoint, load_model, save_model
from cnn_torch.platform.device import resolve_device
from cnn_torch.sources.image_files import load_image
from cnn_torch.visualise import show_attributions

torch.manual_seed(SEED)
train_ds, val_ds, test_ds = icfn.prepare_datasets(DATASET, DATA_DIR, limit=LIMIT, seed=SEED)
class_names = train_ds.class_names

# %% [markdown]
# ## Step 10. Share the model
#
# The model to share is episode 05's best (`models/model_best.pt`). If it is not there (you
# started here), the next cell trains the dropout model of episode 04 to stand in for it.

# %%
if Path("models/model_best.pt").exists():
    model_best = load_model("models/model_best.pt")
else:
    model_best = models.model_dropout(num_classes=len(class_names))
    fit(model_best, torch.nn.CrossEntropyLoss(), "adam", train_ds.images, train_ds.labels, epochs=EPOCHS,
        validation_data=(val_ds.images, val_ds.labels), seed=SEED, verbose=0)

# %% [markdown]
# Keras's `model.save` writes the architecture, the weights and the optimizer's state into
# one `.keras` file. `save_model` writes a checkpoint: the weights, what it takes to build
# the model again (its name and settings), the class names and the training history. It is
# a plain file of numbers and names, which `load_model` reads with PyTorch's safe loader
# (`torch.load(..., weights_only=True)`), so loading a model someone sent you cannot run
# their code.

# %%
# Keras: model_best.save('model_best.keras')
save_model(model_best, "model_best.pt", class_names);

# %% [markdown]
# Anyone with cnn-torch can now build the model from the file alone:

# %%
# Keras: pretrained_model = keras.models.load_model('model_best.keras')
pretrained_model = load_model("model_best.pt")
print(pretrained_model.model_name, "for the classes", load_checkpoint("model_best.pt")["class_names"])

# %% [markdown]
# and use it as before, here on the first test image. The lesson reshapes its image to a
# batch of one, (1, 32, 32, 3); in PyTorch that is (1, 3, 32, 32).

# %%
# Keras: result_pretrained = pretrained_model.predict(test_images[0].reshape(1,32,32,3))
result_pretrained = probabilities(predict(pretrained_model, test_ds.images[0].reshape(1, 3, 32, 32)))
# Keras: print('The predicted probability of each class is: ', result_pretrained.round(4))
print('The predicted probability of each class is: ', result_pretrained.round(decimals=4))
# Keras: print('The class with the highest predicted probability is: ', class_names[result_pretrained.argmax()])
print('The class with the highest predicted probability is: ', class_names[result_pretrained.argmax()])
print('The true class is: ', class_names[test_ds.labels[0]])

# %% [markdown]
# ## Classify an image of your own
#
# Put the path of a photo of yours in `MY_IMAGE` in the settings (with the built-in data, a
# new picture of a star is drawn for you). `load_image` resizes it to 32x32 exactly as the
# training images were resized; then the model classifies it, and an attribution map shows
# which pixels drove its answer. A photo of something that is none of the classes still gets
# one of them: the model can only choose among what it was taught.

# %%
if MY_IMAGE is None:
    MY_IMAGE = icfn.example_image_file("data/my_image.png", shape="star")
my_image = load_image(MY_IMAGE, image_size=(32, 32))
my_probabilities = probabilities(predict(pretrained_model, my_image.unsqueeze(0)))[0]
ranked = pd.Series(my_probabilities.tolist(), index=class_names).sort_values(ascending=False)
print(f"{MY_IMAGE}: {ranked.index[0]} ({ranked.iloc[0]:.2f})")
ranked.head(5).round(3)

# %%
show_attributions(pretrained_model, my_image, None, class_names, method="integrated_gradients",
                  title=f"your image: {Path(MY_IMAGE).name}");

# %% [markdown]
# ## The training history travels with the model
#
# Saving a Keras model leaves its history behind, so the lesson saves the history's data
# frame separately. A checkpoint keeps it; `history.csv` is still the handiest way to share
# the curves.

# %%
history_df = pd.DataFrame.from_dict(load_checkpoint("model_best.pt")["history"]["history"])
history_df.to_csv("history_best.csv", index_label="epoch")
history_df.round(3)

# %% [markdown]
# ## Next steps
#
# * **Pretrained models.** Many trained networks are shared openly (PyTorch Hub, the
#   torchvision model zoo, Hugging Face). Starting from one and training only its last
#   layers on your images (transfer learning) often beats training from scratch on few
#   images: `models.build_model("densenet121_transfer")` is the sibling lesson's.
# * **Libraries.** Keras, TensorFlow and PyTorch share the ideas: layers, a loss, an
#   optimizer, a training loop. Keras 3 can even run on PyTorch. cnn-torch writes Keras's
#   `fit` out as a plain PyTorch loop, so you can read every step.
# * **GPUs.** A graphics card does the many multiplications of a CNN in parallel and trains
#   it many times faster. `fit` uses one when there is one (`device="auto"`):

# %%
print("this machine trains on:", resolve_device("auto"))
