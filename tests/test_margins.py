import math

import numpy as np
import torch

from unlearnbench.margins import margins_from_logits


def test_margin_is_correct_logit_minus_logsumexp_of_the_others():
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.5, 3.0, 0.0]])
    labels = torch.tensor([0, 2])
    expected = [2.0 - math.log(math.exp(1.0) + math.exp(-1.0)), 0.0 - math.log(math.exp(0.5) + math.exp(3.0))]
    np.testing.assert_allclose(margins_from_logits(logits, labels).numpy(), expected, rtol=1e-6)


def test_margin_is_the_logit_of_the_true_class_probability_not_minus_the_max():
    torch.manual_seed(0)
    logits = torch.randn(3, 50, 10)  # [models, points, classes]
    labels = torch.randint(0, 10, (50,))
    p = torch.softmax(logits, dim=-1).gather(-1, labels.view(1, -1, 1).expand(3, -1, 1)).squeeze(-1)
    np.testing.assert_allclose(margins_from_logits(logits, labels), torch.log(p / (1 - p)), rtol=1e-4, atol=1e-5)
    max_other = logits.scatter(-1, labels.view(1, -1, 1).expand(3, -1, 1), -1e9).max(-1).values
    assert not torch.allclose(margins_from_logits(logits, labels), logits.gather(
        -1, labels.view(1, -1, 1).expand(3, -1, 1)).squeeze(-1) - max_other)


def test_stack_margins_do_not_depend_on_the_chunk_size():
    from unlearnbench.margins import stack_margins
    from unlearnbench.stack import ModelStack

    torch.manual_seed(0)
    x, y = torch.randn(300, 1, 8, 8), torch.randint(0, 10, (300,))
    small = ModelStack.initialise("digits_cnn", 10, 1, [1, 2], [0, 1])
    large = ModelStack.initialise("digits_cnn", 10, 1, range(200), range(200))
    # the automatic CPU chunk shrinks as the stack grows (activations of all models stay cache-sized)
    assert 1 <= large.eval_batch_size(x) < small.eval_batch_size(x) <= 512
    one_chunk = stack_margins(small, x, y, batch_size=len(x))
    np.testing.assert_allclose(stack_margins(small, x, y), one_chunk, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stack_margins(small, x, y, batch_size=7), one_chunk, rtol=1e-6, atol=1e-6)
    assert stack_margins(small, x, y, batch_size=7).shape == (2, 300)
