"""Random-weight models of real sizes, built from the real architectures' configs, for speed.

Speed depends on shapes, not on weight values, so a model with the real config and random
weights runs as fast as the checkpoint without downloading it. Tokenizers are small
stand-ins (no network): where the token count matters for speed they are built so that
common words are one token each, as in the real vocabularies.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from tests.fixtures import tiny_models

LABEL_WORDS = [
    *tiny_models.WORDS,
    *[
        "photo",
        "cat",
        "dog",
        "car",
        "bird",
        "horse",
        "ship",
        "truck",
        "plane",
        "frog",
        "deer",
        "kitten",
        "puppy",
        "street",
        "forest",
        "beach",
        "mountain",
    ],
]


def clip_word_tokenizer(words=LABEL_WORDS, max_length: int = 77):
    """CLIP's byte-level BPE over bytes plus merges learnt (as BPE learns them: the most frequent
    pair first) until each of `words` is one token, so that "a photo of a cat." is about as many
    tokens as with the real 49k vocabulary."""
    from collections import Counter

    from transformers import CLIPTokenizer

    vocab = tiny_models._byte_bpe_vocab()
    merges: list[tuple[str, str]] = []
    pieces = [[*w[:-1], w[-1] + "</w>"] for w in dict.fromkeys(w.lower() for w in words if w.isascii() and w.isalpha())]
    while pairs := Counter(pair for p in pieces for pair in itertools.pairwise(p)):
        left, right = max(pairs, key=pairs.__getitem__)
        merges.append((left, right))
        vocab.setdefault(left + right, len(vocab))
        for p in pieces:
            i = 0
            while i < len(p) - 1:
                if (p[i], p[i + 1]) == (left, right):
                    p[i : i + 2] = [left + right]
                i += 1
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def save_clip_b32(folder: Path) -> Path:
    """openai/clip-vit-base-patch32's architecture (CLIPConfig's defaults are ViT-B/32) and image
    processor (resize and centre-crop to 224), with random weights."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = clip_word_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=49408,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(image_size=224, patch_size=32),
        projection_dim=512,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


SMOLLM2_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def save_smollm2_sized(folder: Path) -> Path:
    """HuggingFaceTB/SmolLM2-135M-Instruct's architecture (Llama: 30 layers, width 576, 49,152
    tokens), random weights. The end-of-turn embedding row is zero (tied with the output layer),
    so its logit, 0, is never the largest and greedy decoding always runs to max_new_tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
    vocab_size = 49152
    names = [*specials, *tiny_models.WORDS]
    names += [f"w{i}" for i in range(vocab_size - len(names))]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(names)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.eos_token_id] = 0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sd_turbo_pipeline(device: str, dtype: torch.dtype):
    """stabilityai/sd-turbo's architecture (Stable Diffusion 2.1: UNet with 1024-wide cross
    attention, OpenCLIP ViT-H text encoder, the SD VAE, Euler with trailing timesteps), random
    weights, in memory on `device`. The tokenizer is the byte-level stand-in: prompts are padded
    to 77 tokens anyway, so the text encoder's cost is the real one."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(5, 10, 20, 20),
            cross_attention_dim=1024,
            use_linear_projection=True,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            layers_per_block=2,
            sample_size=768,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=23,
                num_attention_heads=16,
                max_position_embeddings=77,
                hidden_act="gelu",
                projection_dim=512,
            )
        )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tiny_models._clip_tokenizer(max_length=77),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe = pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
