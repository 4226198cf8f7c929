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
# # Episode 05: Evaluate a convolutional neural network and make predictions, in PyTorch
#
# Episode 05 of [Introduction to image classification with CNNs](https://carpentries-incubator.github.io/intro-image-classification-cnn/)
# lets the trained `model_intro` classify the test images, which it has never seen, and
# measures how often it is right: the accuracy, and per class, the confusion matrix. This
# notebook does the same with [cnn-torch](../../README.md), then looks inside the trained
# model (its filters, its feature maps, and which pixels drove each prediction), and ends
# with the lesson's 2024 challenges on tuning hyperparameters: the dropout rate, the
# optimizer and the activation function. Every `# Keras:` comment is the lesson's line that
# the PyTorch line below it replaces.

# %%
# Settings: the only cell to change, then run all cells.
DATASET = "shapes"  # "shapes": built in, offline | "cifar10": downloads CIFAR-10 | "cifar10-5": the
#                     lesson's five CIFAR-10 classes | "folder": your images, DATA_DIR/train/<class>/
DATA_DIR = None  # holds train/<class>/ (e.g. from cnn-torch lesson-data) or cifar-10-batches-py/ (None: data/)
LIMIT = 1250  # training images before 20% are held out to validate (None: all); shapes: 1,000 / 250, and 250 to test
EPOCHS = 10  # for model_intro, when episode 04's is not there to load
TUNING_EPOCHS = 5  # for each model the dropout and activation challenges train (the lesson: 10)
SEED = 1  # the same seed repeats every number below

# %%
# Keras: import tensorflow as tf # neural network
import torch  # neural network
# Keras: import matplotlib.pyplot as plt # plotting
import matplotlib.pyplot as plt  # plotting
# Keras: import icwcnn_functions as icfn # pre-defined helpers
from cnn_torch import workshop as icfn  # pre-defined helpers
# Keras: from sklearn.metrics import confusion_matrix
from cnn_torch.metrics import confusion_matrix
# Keras: import seaborn as sns # specialised plotting
import seaborn as sns  # specialised plotting
import pandas as pd
from pathlib import Path

from cnn_torch import evaluate, fit, models, predict, probabilities
from cnn_torch.checkpoints import load_model, save_model
from cnn_torch.cli.comparison import compare, grid
from cnn_torch.image_grids import show_images
from cnn_torch.plots import overlay_histories
from cnn_torch.visualise import show_attributions, show_feature_maps, show_filters

torch.manual_seed(SEED);

# %%
# Keras: class_names = ['airplane', 'bird', 'cat', 'dog', 'truck']
# Keras: train_ds, val_ds, test_ds = icfn.prepare_datasets()
train_ds, val_ds, test_ds = icfn.prepare_datasets(DATASET, DATA_DIR, limit=LIMIT, seed=SEED)
class_names = train_ds.class_names

# %% [markdown]
# ## The trained model
#
# Episode 04 saved `model_intro` in `models/`. If it is not there (you started here), the
# next cell trains it as episode 04 does.

# %%
if Path("models/model_intro.pt").exists():
    # Keras: model_intro = tf.keras.models.load_model('../models/cifar_model_intro.keras')
    model_intro = load_model("models/model_intro.pt")
else:
    model_intro = models.model_intro(num_classes=len(class_names))
    fit(model_intro, torch.nn.CrossEntropyLoss(), "adam", train_ds.images, train_ds.labels, epochs=EPOCHS,
        validation_data=(val_ds.images, val_ds.labels), seed=SEED, verbose=0)
    save_model(model_intro, "models/model_intro.pt", class_names)

# %% [markdown]
# ## Step 7. Make predictions
#
# `predict` gives one score per class for every test image; the softmax turns them into
# probabilities (the lesson's model applies it in its last layer).

# %%
# Keras: predictions = model_intro.predict(x = test_ds)
predictions = probabilities(predict(model_intro, test_ds.images))
pd.DataFrame(predictions[:5].numpy(), columns=class_names).round(3)

# %% [markdown]
# The predicted class of each image is the one with the highest probability.

# %%
# Keras: predicted_labels = tf.argmax(predictions, axis=1)
predicted_labels = predictions.argmax(dim=1)
print(predicted_labels[:20].tolist())

# %% [markdown]
# ## Step 8. Measure the performance
#
# To compare the predictions with the true classes we need the test labels, in the same
# order as the images that were predicted.
#
# The lesson reads them with a second pass over `test_ds`. But its `test_ds` is shuffled,
# and a shuffled Keras dataset is shuffled anew every time it is read: the second pass
# lists the labels in another order than the first pass predicted the images in. Its
# accuracy and confusion matrix compare predictions with the labels of other images, and
# come out at chance (its printed matrix has 56 of 250 on the diagonal, about one in five,
# for five classes). What it means to do is compare each prediction with its own image's
# label: here the test split keeps one order, so `test_ds.labels` are those labels.

# %%
# Keras: test_labels = np.concatenate([y for x, y in test_ds], axis=0)
test_labels = test_ds.labels
# Keras: test_acc = accuracy_score(y_true=test_labels, y_pred=predicted_labels)
test_acc = (predicted_labels == test_labels).float().mean().item()
# Keras: print('Accuracy:', round(test_acc,2))
print("Accuracy:", round(test_acc, 2))

# %% [markdown]
# Keras's `evaluate` gives the same accuracy, and the loss, in one call:

# %%
# Keras: test_loss, test_acc = model_intro.evaluate(test_ds)
test_loss, test_acc = evaluate(model_intro, test_ds.images, test_ds.labels)
print(f"loss: {test_loss:.4f} - accuracy: {test_acc:.4f}")

# %% [markdown]
# ### The confusion matrix
#
# Accuracy is one number for all classes. The confusion matrix counts, for every true class
# (a row) how many of its images were predicted as each class (a column). The diagonal holds
# the right answers; a large number off the diagonal shows two classes the model mixes up.

# %%
# Keras: conf_matrix = confusion_matrix(y_true=test_labels, y_pred=predicted_labels)
conf_matrix = confusion_matrix(test_labels, predicted_labels, num_classes=len(class_names))
# Keras: print(conf_matrix)
print(conf_matrix)

# %%
# Keras: sns.heatmap(data=conf_matrix, annot=True, fmt='d',
#                    xticklabels=class_names,
#                    yticklabels=class_names)
sns.heatmap(data=conf_matrix, annot=True, fmt='d', xticklabels=class_names, yticklabels=class_names)
# Keras: plt.xlabel('Predicted label')
plt.xlabel('Predicted label')
# Keras: plt.ylabel('True label')
plt.ylabel('True label');

# %% [markdown]
# Which classes does the model get right most often, and which does it confuse? Some test
# images with their true and predicted classes (the wrong ones in red):

# %%
show_images(test_ds.images[:20], test_labels[:20], class_names, "test images", predictions=predicted_labels[:20]);

# %% [markdown]
# ## What the trained model sees
#
# Episode 03 looked at the untrained model. After training, the first layer's filters have
# changed from noise into detectors of colours and edges, and the feature maps of an image
# pick out parts of the object.

# %%
show_filters(model_intro, title="model_intro, trained");

# %%
show_feature_maps(model_intro, test_ds.images[0], class_names, test_labels[0], title="model_intro, trained");

# %% [markdown]
# ### Which pixels drove each prediction?
#
# An **attribution map** colours every pixel by how much it pushed the model towards the
# class it predicted. Integrated gradients (from [Captum](https://captum.ai), PyTorch's
# interpretability library) gives one value per pixel: it follows how the class's score
# grows as the image fades in from black. A model that has learned the shapes lights up the
# object; one that lights up the background has learned something else.

# %%
show_attributions(model_intro, test_ds.images[:8], test_labels[:8], class_names, method="integrated_gradients");

# %% [markdown]
# The maps are noisy: `model_intro` sees one pixel's neighbourhood at a time, and is right
# about fewer than half of the images.
#
# **Grad-CAM** looks at a deeper layer: it weighs each feature map of a convolution by how
# much the class's score depends on it, and draws their sum over the image. It needs a
# convolution that has already combined the first layer's patterns, which `model_intro`,
# with its single convolution, does not have. The dropout model of episode 04 has three
# (it is trained here if episode 04's is not there to load). Its last one leaves maps of
# only 4x4 values, too coarse to point at parts of a 32x32 image; the second, with maps of
# 13x13 (see the summary in episode 04), shows where the model looked.

# %%
if Path("models/model_dropout.pt").exists():
    model_dropout = load_model("models/model_dropout.pt")
else:
    model_dropout = models.model_dropout(num_classes=len(class_names))
    fit(model_dropout, torch.nn.CrossEntropyLoss(), "adam", train_ds.images, train_ds.labels, epochs=EPOCHS,
        validation_data=(val_ds.images, val_ds.labels), seed=SEED, verbose=0)
    save_model(model_dropout, "models/model_dropout.pt", class_names)
show_attributions(model_dropout, test_ds.images[:8], test_labels[:8], class_names, method="gradcam",
                  layer="conv2d_1 (Conv2D)");

# %% [markdown]
# ## Step 9. Tune hyperparameters
#
# Hyperparameters are the settings we choose rather than the model learns: the dropout rate
# and the activation function when building, the optimizer and its learning rate when
# compiling, the epochs and batch size when fitting. The lesson's 2024 version tries a few of
# each. `compare` trains one model per setting, every one from the same initial weights and
# on the same order of images, so the setting is the only difference between them (the
# lesson builds a new model each time, so its runs also differ in their random start). Each
# trains for `TUNING_EPOCHS` epochs here, to keep the notebook quick; after so few epochs a
# comparison favours the settings that learn fastest, and ten tell more.
#
# ### Challenge: the dropout rate
#
# The lesson's loop trains the dropout model once per rate and plots each model's validation
# loss after training. (It notes that a choice made on the validation images should be
# checked once more on the test images at the end.)

# %%
# Keras: dropout_rates = [0.15, 0.3, 0.45, 0.6, 0.75]
dropout_rates = [0.15, 0.3, 0.45, 0.6, 0.75]
# Keras: for dropout_rate in dropout_rates:
#            model_vary = create_model_dropout_vary(dropout_rate)
#            model_vary.compile(optimizer = keras.optimizers.Adam(), loss = ..., metrics = ...)
#            model_vary.fit(x = train_images, y = train_labels, batch_size = 32, epochs = 10,
#                           validation_data = (val_images, val_labels))
#            val_loss_vary, val_acc_vary = model_vary.evaluate(val_images, val_labels)
#            val_losses_vary.append(val_loss_vary)
dropout_results = compare("model_dropout", train_ds.images, train_ds.labels, grid(dropout=dropout_rates),
                          epochs=TUNING_EPOCHS, validation_data=(val_ds.images, val_ds.labels), seed=SEED,
                          class_names=class_names)
# Keras: loss_df = pd.DataFrame({'dropout_rate': dropout_rates, 'val_loss_vary': val_losses_vary})
loss_df = pd.DataFrame({"dropout_rate": dropout_rates, "val_loss_vary": dropout_results.table["final_val_loss"]})
# Keras: sns.lineplot(data=loss_df, x='dropout_rate', y='val_loss_vary')
sns.lineplot(data=loss_df, x='dropout_rate', y='val_loss_vary', marker="o");

# %% [markdown]
# ### Challenge: the optimizer, by grid search
#
# The lesson wraps its model for scikit-learn and lets `GridSearchCV` try three optimizers
# with 3-fold cross-validation: each optimizer is trained three times, each time holding out
# a different third of the training images, and scored by its mean accuracy on the held-out
# thirds. `compare(..., folds=3)` does the same.

# %%
# Keras: model = KerasClassifier(model=create_model_intro, epochs=2, batch_size=32, verbose=0)
# Keras: optimizer = ['SGD', 'RMSprop', 'Adam']
# Keras: param_grid = dict(optimizer=optimizer)
# Keras: grid = GridSearchCV(estimator=model, param_grid=param_grid, n_jobs=1, cv=3)
# Keras: grid_result = grid.fit(train_images, train_labels)
grid_result = compare("model_intro", train_ds.images, train_ds.labels, grid(optimizer=["sgd", "rmsprop", "adam"]),
                      epochs=2, folds=3, seed=SEED, class_names=class_names, verbose=0)
# Keras: print("Best: %f using %s" % (grid_result.best_score_, grid_result.best_params_))
print(grid_result.best_line())
grid_result.table

# %% [markdown]
# ### Challenge: the activation function
#
# The activation function is applied to every output of a convolution or a hidden dense
# layer. The lesson tries five in a loop and plots each model's validation accuracy, epoch by
# epoch (`overlay_histories` draws the training curves too, lighter and dashed).

# %%
# Keras: activations = ['relu', 'sigmoid', 'tanh', 'selu', keras.layers.LeakyReLU()]
activations = ["relu", "sigmoid", "tanh", "selu", "leaky_relu"]
# Keras: for activation in activations:
#            model = create_model_act(activation)
#            history = model.fit(x = train_images, y = train_labels, batch_size = 32, epochs = 10,
#                                validation_data = (val_images, val_labels))
#            history_data[str(activation)] = history
activation_results = compare("model_dropout", train_ds.images, train_ds.labels, grid(activation=activations),
                             epochs=TUNING_EPOCHS, validation_data=(val_ds.images, val_ds.labels), seed=SEED,
                             class_names=class_names)
# Keras: for activation, history in history_data.items():
#            plt.plot(history.history['val_categorical_accuracy'], label=activation)
overlay_histories(activation_results.histories, "Validation accuracy for different activation functions");

# %% [markdown]
# ## Choose the best model
#
# Which model is best? The lesson chooses on the validation images: here every model this
# episode has trained, each scored by `evaluate` on the validation split. The winner's
# accuracy on the test images, which took no part in choosing it, is the honest estimate of
# how it will do on new images. It is saved for episode 06.

# %%
candidates = {"model_intro": model_intro, "model_dropout": model_dropout,
              **{f"model_dropout, {name}": model for name, model in dropout_results.models.items()},
              **{f"model_dropout, {name}": model for name, model in activation_results.models.items()}}
val_accuracy = {name: evaluate(model, val_ds.images, val_ds.labels)[1] for name, model in candidates.items()}
best = max(val_accuracy, key=val_accuracy.get)
model_best = candidates[best]
test_loss, test_acc = evaluate(model_best, test_ds.images, test_ds.labels)
print(f"best on the validation images: {best} (val_accuracy {val_accuracy[best]:.3f}); test accuracy {test_acc:.3f}")
save_model(model_best, "models/model_best.pt", class_names);
