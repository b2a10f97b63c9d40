"""The spec language: what a paramcalc YAML file (or an imported Hugging Face
config.json) says about a network.

Field names follow Hugging Face `config.json` (`hidden_size`,
`num_key_value_heads`, `intermediate_size`) so real configs map directly.
Models are frozen and forbid unknown keys, so a typo in a YAML file fails
loudly with the field's name. Numbers take the command line's grammar
(`1e9`, `128Ki`; inputs/fields.py). `paramcalc schema` exports the JSON Schema.
"""

# No `from __future__ import annotations`: pydantic reads these classes' fields
# at import, and real annotations spare it evaluating strings on every cold start.
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from paramcalc.inputs.fields import STRICT, Count, Natural, Number


class _Spec(BaseModel):
    model_config = STRICT

    @classmethod
    def trusted(cls, data: dict):
        """Build without validating: only for the embedded presets, which the
        test suite validates (tests/test_presets.py). It skips building the
        validator, a tenth of a cold `paramcalc count`."""
        from typing import get_args

        fields = {}
        for name, value in data.items():
            kinds = set(get_args(cls.model_fields[name].annotation)) | {cls.model_fields[name].annotation}
            nested = next((k for k in kinds if isinstance(k, type) and issubclass(k, _Spec)), None)
            if nested and isinstance(value, dict):
                value = nested.trusted(value)
            elif isinstance(value, list):
                value = tuple(value)
            fields[name] = value
        return cls.model_construct(**fields)


# Layers are lowered one by one (sliding windows and dense/MoE patterns vary per
# layer): a limit far beyond any real model keeps absurd input from hanging.
MAX_LAYERS = 100_000


class MoESpec(_Spec):
    """Routed experts (and optional shared ones) replacing the dense MLP."""

    num_experts: Count = Field(description="routed experts per MoE layer (num_local_experts, n_routed_experts)")
    num_experts_per_tok: Count = Field(description="experts each token is routed to (top-k)")
    moe_intermediate_size: Count | None = Field(
        None, description="width of one routed expert; default intermediate_size")
    shared_expert_intermediate_size: Natural = Field(
        0, description="total width of the always-on shared expert(s); 0: none")
    shared_expert_gate: bool = Field(
        False, description="Qwen2-MoE: a sigmoid gate (h x 1 linear) scales the shared expert")
    router_bias: bool = Field(False, description="the router linear has a bias")
    score_correction_bias: bool = Field(
        False, description="DeepSeek-V3: a learned per-expert bias for routing (e_score_correction_bias)")
    first_k_dense_replace: Natural = Field(0, description="the first k layers keep a dense MLP (DeepSeek)")
    decoder_sparse_step: Count = Field(1, description="layer i is MoE when (i + 1) % step == 0 (Qwen2-MoE)")
    mlp_only_layers: tuple[Natural, ...] = Field((), description="layer indices that keep a dense MLP (Qwen2/3-MoE)")

    @model_validator(mode="after")
    def _top_k_fits(self):
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(f"num_experts_per_tok ({self.num_experts_per_tok}) exceeds num_experts "
                             f"({self.num_experts})")
        return self

    def is_moe_layer(self, i: int) -> bool:
        return (i >= self.first_k_dense_replace and i not in self.mlp_only_layers
                and (i + 1) % self.decoder_sparse_step == 0)


class MLASpec(_Spec):
    """Multi-head latent attention (DeepSeek-V2/V3)."""

    q_lora_rank: Count | None = Field(None, description="query bottleneck rank; null: a full q projection")
    kv_lora_rank: Count = Field(description="rank of the compressed K/V latent (what the cache stores)")
    qk_nope_head_dim: Count = Field(description="per-head query/key dims without rotary")
    qk_rope_head_dim: Count = Field(description="rotary dims, one shared key per token")
    v_head_dim: Count = Field(description="per-head value dims")


class DisentangledSpec(_Spec):
    """DeBERTa-v2/v3's disentangled attention (He et al. 2021, section 3.1 and 3.3;
    transformers' modeling_deberta_v2): content-to-position and position-to-content
    scores against a shared table of relative-position embeddings."""

    attention_span: Natural = Field(description="k: position_buckets, else max_relative_positions (the relative "
                                                "table has 2k rows); 0: relative_attention off, no table")
    pos_att_type: tuple[Literal["c2p", "p2c"], ...] = Field(
        ("c2p", "p2c"), description="the position terms added to the content scores")
    share_att_key: bool = Field(True, description="the table is projected by the content q/k projections; false: "
                                                  "pos_key_proj (c2p) and pos_query_proj (p2c) of its own")
    norm_rel_ebd: bool = Field(True, description="a LayerNorm on the relative table (norm_rel_ebd: layer_norm)")
    conv_kernel_size: Natural = Field(0, description="a Conv1d (+ LayerNorm) beside the first layer; 0: none")
    conv_groups: Count = Field(1, description="groups of that Conv1d")


class SSMSpec(_Spec):
    """A selective state-space mixer in place of attention: Mamba (Gu & Dao 2023) or
    Mamba-2 (Dao & Gu 2024), as transformers' modeling_mamba / modeling_mamba2 build it."""

    version: Literal[1, 2] = Field(1, description="1: Mamba's selective scan; 2: Mamba-2's SSD with heads and groups")
    intermediate_size: Count = Field(description="d_inner, the mixer's width (expand x hidden_size)")
    state_size: Count = Field(description="N: state dimensions per channel (Mamba) or per head (Mamba-2)")
    conv_kernel: Count = Field(4, description="taps of the depthwise causal conv1d")
    time_step_rank: Count | None = Field(None, description="Mamba: dt's low rank (dt_rank; 'auto': ceil(h / 16))")
    num_heads: Count | None = Field(None, description="Mamba-2: SSM heads (d_inner = num_heads x head_dim)")
    n_groups: Count = Field(1, description="Mamba-2: groups sharing B and C (like K/V groups)")
    chunk_size: Count = Field(256, description="Mamba-2: the SSD scan's chunk length")
    use_bias: bool = Field(False, description="in_proj and out_proj have biases")
    use_conv_bias: bool = Field(True, description="the conv1d has a bias")
    bcdt_norm: bool = Field(False, description="Falcon-Mamba: weightless RMS norms on dt, B and C (no parameters)")
    bcdt_norm_weight: bool = Field(False, description="Jamba: those norms have weights (dt_rank + 2 N parameters)")
    attention_layers: tuple[Natural, ...] = Field(
        (), description="hybrid (Jamba): layer indices that keep attention; the others run the mixer")
    feed_forward: bool = Field(False, description="every layer also has the feed-forward block (dense or MoE) after "
                                                  "its mixer (Jamba); false: the mixer alone (Mamba)")

    @model_validator(mode="after")
    def _shapes_divide(self):
        if self.bcdt_norm_weight and not self.bcdt_norm:
            raise ValueError("bcdt_norm_weight needs bcdt_norm")
        if self.version == 1 and self.time_step_rank is None:
            raise ValueError("Mamba needs time_step_rank (dt_rank)")
        if self.version == 2:
            if self.num_heads is None or self.intermediate_size % self.num_heads:
                raise ValueError(f"Mamba-2 needs num_heads dividing intermediate_size ({self.intermediate_size})")
            if self.num_heads % self.n_groups or self.intermediate_size % self.n_groups:
                raise ValueError(f"n_groups ({self.n_groups}) does not divide num_heads ({self.num_heads})")
        return self


class AudioSpec(_Spec):
    """Whisper's speech encoder input (Radford et al. 2022, section 2.2; transformers' modeling_whisper):
    log-mel frames through two convolutions (kernel 3, the second of stride 2, each followed by GELU)
    and a table of max_source_positions positions; the encoder always runs on that many positions."""

    num_mel_bins: Count = Field(description="mel channels of each input frame (80; 128 for large-v3)")
    max_source_positions: Count = Field(
        description="encoder positions (1500: 30 s of audio, 3000 frames halved by the strided conv)")


class VisionSpec(_Spec):
    """A CLIP vision tower (Radford et al. 2021, section 2.4; transformers' modeling_clip.CLIPVisionModel):
    a bias-free patch conv, a class embedding and learned positions, pre_layrnorm, pre-norm LayerNorm
    layers with biased q/k/v/out and a plain biased MLP, post_layernorm on the class token. Beside
    a text tower (CLIP) or feeding a language model through LLaVA's projector (Liu et al. 2023)."""

    image_size: Count = Field(description="input images are image_size x image_size pixels (224, 336)")
    patch_size: Count = Field(description="square patches of patch_size pixels (32, 14), one position each")
    num_channels: Count = Field(3, description="image channels")
    hidden_size: Count = Field(description="the tower's width")
    num_hidden_layers: Count = Field(le=MAX_LAYERS, description="the tower's layers (all hold weights and run)")
    num_attention_heads: Count = Field(description="the tower's attention heads")
    intermediate_size: Count = Field(description="the tower's MLP width")
    hidden_act: str = Field("quick_gelu", description="the tower's MLP activation")
    attention_dropout: Number = Field(0.0, lt=1, description="dropout on the tower's attention probabilities")
    projection_dim: Count | None = Field(
        None, description="CLIP: visual_projection's width (no bias) on the pooled class token; null: none")
    projector_hidden_act: str | None = Field(
        None, description="LLaVA: multi_modal_projector linear_1 -> act -> linear_2 into hidden_size; null: none")
    projector_bias: bool = Field(True, description="LLaVA: the projector's linears have biases")
    feature_layers: Count = Field(1, description="LLaVA: hidden states concatenated into the projector "
                                                 "(vision_feature_layer as a list)")
    keep_class_token: bool = Field(False, description="LLaVA: vision_feature_select_strategy full (patches + "
                                                      "the class token become image tokens); false: default")

    @model_validator(mode="after")
    def _shapes_divide(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size ({self.patch_size}) does not divide image_size ({self.image_size})")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) does not divide the vision tower's "
                             f"hidden_size ({self.hidden_size})")
        return self

    @property
    def positions(self) -> int:
        """Positions the tower runs on per image: the patches and the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def image_tokens(self) -> int:
        """LLaVA: the language model's positions one image fills (576 for 336 / 14)."""
        return self.positions - (not self.keep_class_token)


class LoRASpec(_Spec):
    """Low-rank adapters on named linears (Hu et al. 2021); the base model is frozen."""

    rank: Count = Field(
        description="r: the adapters' inner width; each adapted d_in x d_out linear adds r (d_in + d_out) parameters")
    alpha: Number = Field(16.0, description="lora_alpha: the update is scaled by alpha / r (no effect on counts)")
    target_modules: tuple[str, ...] = Field(("q_proj", "v_proj"), min_length=1, description=(
        "linear names to adapt: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
        "(paramcalc's names for every family; GPT-2's fused c_attn is q_proj, k_proj and v_proj here)"))
    modules_to_save: tuple[str, ...] = Field(
        (), description="breakdown-key patterns trained in full beside the adapters (PEFT's modules_to_save), e.g. "
                    "head")
    dropout: Number = Field(0.0, ge=0, lt=1, description=(
        "lora_dropout on each adapter's input: each adapter then keeps its own dropped copy and mask for "
        "backward (memory only; PEFT's default 0, LitGPT's 0.05)"))


class TransformerSpec(_Spec):
    """A transformer: decoder-only (GPT, Llama), encoder-only (BERT), encoder-decoder (T5) or a vision transformer."""

    # provenance (presets carry these)
    name: str | None = Field(None, description="model name, e.g. llama-3.1-8b")
    family: str | None = Field(None, description="model family, e.g. llama")
    source: str | None = Field(None, description="where the numbers come from (model card, paper, config)")
    expected_params: Count | None = Field(None, description="the published or instantiated parameter count")

    architecture: Literal["decoder", "encoder", "encoder-decoder", "vit", "clip"] = Field(
        "decoder", description="stack layout; vit: an encoder over image patches (Dosovitskiy et al. 2021); clip: "
                               "CLIP's causal text encoder, with a `vision:` tower beside it (Radford et al. 2021)")
    vocab_size: Count | None = Field(None, description="rows of the token embedding (required except for vit)")
    image_size: Count | None = Field(None, description="vit: input images are image_size x image_size pixels")
    patch_size: Count | None = Field(None, description="vit: square patches of patch_size pixels, one token each")
    num_channels: Count = Field(3, description="vit: image channels")
    patch_bias: bool = Field(True, description="vit: the patch conv has a bias (CLIP's has none)")
    hidden_size: Count = Field(description="model width h")
    num_hidden_layers: Count = Field(le=MAX_LAYERS, description="layers (encoder layers for encoder-decoder)")
    num_decoder_layers: Count | None = Field(None, le=MAX_LAYERS,
                                           description="encoder-decoder: decoder layers; default num_hidden_layers")
    num_attention_heads: Count = Field(description="query heads n")
    num_key_value_heads: Count | None = Field(
        None, description="K/V heads g (GQA; 1 = MQA); default num_attention_heads")
    head_dim: Count | None = Field(None, description="per-head width; default hidden_size / num_attention_heads")
    intermediate_size: Count = Field(description="feed-forward width f")
    hidden_act: str = Field("silu", description="activation of the feed-forward block")
    mlp: Literal["gated", "plain"] = Field(
        "gated", description="gated: down(act(gate x) * up x) (SwiGLU/GeGLU); plain: down(act(up x))")
    mlp_bias: bool = Field(False, description="feed-forward linears have biases")
    qkv_bias: bool = Field(False, description="q, k and v projections have biases (Qwen2: these only)")
    k_proj_bias: bool | None = Field(None, description="the key projection has a bias; default qkv_bias (Whisper: "
                                                       "none, beside biased q and v)")
    o_bias: bool = Field(False, description="the attention output projection has a bias")
    qk_norm: bool = Field(False, description="a norm (of the `norm` kind) on queries and keys (Qwen3, Gemma 3, OLMo 2)")
    attention_sinks: bool = Field(False, description="gpt-oss: one learned sink logit per head in every softmax")
    qk_norm_bias: bool | None = Field(
        None, description="LayerNorm q/k norms have a bias; default norm_bias (StableLM's have none)")
    qk_norm_over: Literal["head", "projection"] = Field(
        "head", description="head: over head_dim, shared by the heads (Qwen3); projection: over all heads at once "
                            "(OLMo 2)")
    norm: Literal["rmsnorm", "layernorm"] = Field("rmsnorm", description="normalisation layer")
    norm_bias: bool = Field(True, description="LayerNorm has a bias (ignored for RMSNorm)")
    norm_affine: bool = Field(True, description="norms have weights (OPT's layer_norm_elementwise_affine=false: none)")
    layout: Literal["pre", "post", "sandwich", "parallel", "parallel-shared", "reordered"] = Field(
        "pre", description="where norms sit: pre (Llama), post (BERT), sandwich (Gemma 2), parallel (NeoX), "
                           "parallel-shared (GPT-J), reordered (OLMo 2: a norm on each sublayer's output)")
    final_norm: bool = Field(True, description="a norm after the last layer (post-norm models have none)")
    embedding_norm: bool = Field(False, description="a norm right after the embeddings (BLOOM, BERT; CLIP's "
                                                    "pre_layrnorm)")
    position_embedding: Literal["rope", "alibi", "learned", "relative", "none"] = Field(
        "rope", description="rope/alibi/relative carry no table; learned adds max_positions x h")
    training_seq_len: Count | None = Field(
        None, description="the context the model was pre-trained at (Llama 3.1: 8192); memory and estimate plan for "
                          "it by default [default: the default sequence length]")
    max_position_embeddings: Count | None = Field(None, description="positions of the learned table")
    position_offset: Natural = Field(0, description="extra position rows (OPT reserves 2)")
    type_vocab_size: Natural = Field(0, description="token-type rows (BERT's segment embeddings)")
    relative_attention_num_buckets: Count = Field(32, description="T5's relative position buckets")
    word_embed_proj_dim: Count | None = Field(None, description="OPT: width of the word vectors when projected")
    embedding_size: Count | None = Field(None, description=(
        "ELECTRA: width of the token, position and type tables and the embedding norm, projected (with a bias) "
        "to hidden_size; an MLM head transforms back down to it"))
    tie_word_embeddings: bool = Field(False, description="the LM head reuses the token embedding")
    lm_head_bias: bool = Field(False, description="the LM head has a vocab-sized bias (Phi, GPT-J)")
    head: Literal["lm", "mlm", "pooler", "classifier", "token-classifier", "qa", "discriminator", "contrastive",
                  "none"] = Field(
        "lm", description="lm: logits per token; mlm: BERT's MLM head; pooler: BERT's pooler; classifier: a sequence "
                          "score layer; token-classifier: labels per token; qa: span start/end logits; "
                          "discriminator: ELECTRA's replaced-token logit per token; contrastive: CLIP's text and "
                          "visual projections and the image-text similarities")
    projection_dim: Count | None = Field(None, description="clip: text_projection's width (no bias)")
    num_labels: Count = Field(2, description="outputs of a classifier head")
    sliding_window: Count | None = Field(None, description="attention window of sliding layers")
    layer_types: tuple[Literal["full_attention", "sliding_attention"], ...] | None = Field(
        None, description="per layer; default: every layer sliding when sliding_window is set")
    attn_logit_softcapping: Number | None = Field(None, description="Gemma 2: tanh cap on attention scores")
    final_logit_softcapping: Number | None = Field(None, description="Gemma 2: tanh cap on logits")
    attention_dropout: Number = Field(0.0, lt=1, description="dropout on attention probabilities")
    hidden_dropout: Number = Field(0.0, lt=1, description="dropout on each sublayer's output")
    attention_output_dropout: bool = Field(True, description="hidden_dropout also drops the attention output; false: "
                                           "only the feed-forward's (DistilBERT) or the parallel sum once (Falcon)")
    embedding_dropout: Number = Field(0.0, lt=1, description="dropout on the embeddings' output")
    mlp_inner_dropout: bool = Field(
        False, description="T5: hidden_dropout also between the activation and the down projection")
    rmsnorm_style: Literal["llama", "t5", "gemma", "olmo2"] = Field(
        "llama", description="how RMSNorm computes, for saved bytes: llama, t5, gemma (1 + weight, all in fp32) "
                             "or olmo2 (the weight multiply in fp32)")
    layernorm_style: Literal["native", "fp32", "cohere"] = Field(
        "native", description="how LayerNorm computes, for saved bytes: native (torch's kernel), fp32 (the kernel "
                              "on an fp32 copy: OLMo) or cohere (composed of fp32 elementwise ops)")
    softmax_fp32: bool = Field(
        True, description="eager attention's softmax upcasts to fp32 (Llama, OPT, BLOOM); false: model dtype (GPT-2, "
                    "BERT, T5, Falcon)")
    scores_fp32: bool = Field(
        False, description="eager attention upcasts q and k to fp32 before q k^T (GPT-J, GPT-Neo)")
    fused_qkv: bool = Field(False, description="q, k, v are views of one fused projection with no rotary copy "
                            "(GPT-2's c_attn, BLOOM's query_key_value): same count, more saved at batch 1")
    rotary_pct: Number = Field(1.0, le=1, description="share of head_dim that is rotated (GPT-NeoX rotary_pct)")
    num_hidden_groups: Count | None = Field(None, description=(
        "ALBERT: groups of inner_group_num layers that hold weights; the num_hidden_layers runs share them "
        "(Lan et al. 2020, section 3.1); null: every layer its own weights"))
    inner_group_num: Count = Field(1, description="ALBERT: layers in each group, all run at every step")
    disentangled: DisentangledSpec | None = Field(None, description="DeBERTa-v2/v3's disentangled attention")
    moe: MoESpec | None = Field(None, description="mixture of experts")
    mla: MLASpec | None = Field(None, description="multi-head latent attention")
    ssm: SSMSpec | None = Field(None, description=(
        "a state-space mixer (Mamba) in place of attention: in every layer with no feed-forward block (Mamba), "
        "or beside attention layers with one (Jamba)"))
    audio: AudioSpec | None = Field(None, description=(
        "encoder-decoder: a speech encoder over log-mel frames (Whisper) in place of the encoder's token table"))
    vision: VisionSpec | None = Field(None, description=(
        "a CLIP vision tower: beside the text tower (clip), or feeding a decoder's language model through LLaVA's "
        "projector, its image tokens part of the decoder's sequence"))
    freeze: tuple[str, ...] = Field((), description=(
        "glob patterns on breakdown keys whose parameters are frozen: 'embedding' (a key prefix), 'layers/*/mlp/*'"))
    lora: LoRASpec | None = Field(None, description="LoRA adapters; everything else is frozen")

    @model_validator(mode="after")
    def _shapes_divide(self):
        if self.architecture == "vit":
            if not (self.image_size and self.patch_size):
                raise ValueError("a vit needs image_size and patch_size")
            if self.image_size % self.patch_size:
                raise ValueError(f"patch_size ({self.patch_size}) does not divide image_size ({self.image_size})")
            if self.head not in ("classifier", "pooler", "none"):
                raise ValueError(f"a vit's head is classifier, pooler or none, not {self.head}")
        elif self.vocab_size is None:
            raise ValueError("vocab_size is required (the rows of the token embedding)")
        n, g = self.num_attention_heads, self.kv_heads
        if self.head_dim is None and self.mla is None and self.hidden_size % n:
            raise ValueError(f"num_attention_heads ({n}) does not divide hidden_size ({self.hidden_size}); "
                             "set head_dim or pick a head count that divides it")
        if n % g:
            raise ValueError(f"num_key_value_heads ({g}) does not divide num_attention_heads ({n})")
        if self.position_embedding == "learned" and not self.max_position_embeddings:
            raise ValueError("learned positions need max_position_embeddings")
        if self.head == "contrastive" and not (self.architecture == "clip" and self.vision and self.projection_dim
                                               and self.vision.projection_dim):
            raise ValueError("a contrastive head needs architecture clip, projection_dim and a vision tower with "
                             "projection_dim")
        if self.vision and self.architecture == "decoder" and not self.vision.projector_hidden_act:
            raise ValueError("a decoder's vision tower feeds it through a projector: set vision.projector_hidden_act")
        if self.vision and self.architecture not in ("clip", "decoder"):
            raise ValueError("vision: is for clip or a decoder (LLaVA)")
        if self.architecture == "clip" and self.head not in ("contrastive", "none"):
            raise ValueError(f"a clip model's head is contrastive or none, not {self.head}")
        if self.audio and self.architecture != "encoder-decoder":
            raise ValueError("audio: is for an encoder-decoder (Whisper)")
        if self.ssm and any(i >= self.num_hidden_layers for i in self.ssm.attention_layers):
            raise ValueError(f"ssm.attention_layers names a layer beyond the {self.num_hidden_layers} layers")
        if self.layer_types is not None and len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers")
        return self

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def attention_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def window(self, i: int) -> int | None:
        """The sliding window of layer i, or None for full attention."""
        if not self.sliding_window:
            return None
        if self.layer_types is None or self.layer_types[i] == "sliding_attention":
            return self.sliding_window
        return None


class CountSpec(_Spec):
    """A model known only by its parameter count (`7.5B`)."""

    name: str
    params: Count = Field(description="the parameter count")


def spec_schema() -> dict:
    """The JSON Schema of a spec file: a transformer spec, or `architecture: layers`."""
    from typing import Union

    from pydantic import TypeAdapter

    from paramcalc.inputs.layers_spec import LayersSpec

    schema = TypeAdapter(Union[TransformerSpec, LayersSpec]).json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "paramcalc spec", **schema}
