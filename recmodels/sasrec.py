"""SASRec: a causal Transformer over a user's item history that predicts the next item.

Item ids are internal: ``0`` is padding (PAD), real items are ``1..n_items``. Inputs are left-padded so the
most recent item is always the last position. With ``event_types > 1`` inputs are tokens of any behaviour
(``recmodels.sequences.encode``: views, carts... beside purchases): each input adds its behaviour's embedding, the
model learns to predict purchases only, and the item-to-item matrix and history offset read the purchases. Three item representations (the ablation switch
``SASRecConfig.item_text``):

* ``"id"``: a learned embedding per item (classic SASRec);
* ``"text"``: a learned projection of a frozen text vector (e.g. BERT), so an item with no interactions still
  gets a meaningful score;
* ``"id+text"``: the sum of both (text-aware SASRec).

The same representation embeds the inputs and scores the outputs (tied weights), so the catalogue-wide
softmax costs one matrix product. Padding is handled with attention masks, never with scores: the PAD column
of every score matrix is ``-inf``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Defined with the presets, which load without torch; re-exported because the model and its config go together.
from recmodels.presets import SASRecConfig
from recmodels.sequences import EVENT_TYPES
from recmodels.transformer_blocks import Block, normed

_FORMAT_VERSION = 1
ITEM_IDS_FILE = "item_ids.json"
ITEM_TEXT_FILE = "item_text.npy"
ITEM_TO_ITEM_MAX_ITEMS = 20_000  # (n+1)^2 float32 weights plus two AdamW moments: about 4.8 GB at this size


def _embedding(rows: int, dim: int, initialize: bool, padding_idx: int | None = None) -> nn.Embedding:
    """An embedding table; without ``initialize`` its storage is not drawn at random first (a load overwrites it,
    and the item-to-item matrix of a 3,600-item shop is 13M numbers, more than a second of CPU to draw)."""
    return nn.Embedding(rows, dim, padding_idx=padding_idx, _weight=None if initialize else torch.empty(rows, dim))


class SASRec(nn.Module):
    """Next-item model: ``forward`` for training, ``score`` and ``recommend`` for inference."""

    def __init__(
        self,
        config: SASRecConfig,
        n_items: int,
        item_text_embeddings: torch.Tensor | np.ndarray | None = None,
        initialize: bool = True,
    ) -> None:
        """``initialize=False``: the weights are left undrawn, for a checkpoint to fill (``load``)."""
        super().__init__()
        if n_items < 1:
            raise ValueError(f"n_items must be positive, got {n_items}")
        self.config = config
        self.n_items = n_items
        d = config.hidden_size
        if config.item_text in ("id", "id+text"):
            self.item_ids = _embedding(n_items + 1, d, initialize, padding_idx=0)
        if config.uses_text:
            if item_text_embeddings is None:
                raise ValueError(f"item_text={config.item_text!r} needs item_text_embeddings")
            text = torch.as_tensor(np.asarray(item_text_embeddings), dtype=torch.float32)
            if text.shape != (n_items + 1, config.text_dim):
                expected = (n_items + 1, config.text_dim)
                raise ValueError(f"item_text_embeddings must be {expected}, got {tuple(text.shape)}")
            # Frozen and not persistent: the text matrix belongs to the embeddings asset, not the checkpoint.
            self.register_buffer("item_text", text, persistent=False)
            self.text_projection = nn.Linear(config.text_dim, d)
        if config.item_to_item:
            if n_items > ITEM_TO_ITEM_MAX_ITEMS:
                raise ValueError(
                    f"item_to_item needs an (n_items + 1)^2 matrix; {n_items} items exceed the limit of "
                    f"{ITEM_TO_ITEM_MAX_ITEMS}: switch it off for this catalogue"
                )
            self.item_to_item = _embedding(n_items + 1, n_items + 1, initialize, padding_idx=0)
        if config.history_bias:
            self.history_bias_shared = nn.Parameter(torch.zeros(()))
            self.history_bias = nn.Parameter(torch.zeros(n_items + 1))
        if config.event_types > len(EVENT_TYPES):
            raise ValueError(f"event_types {config.event_types} exceeds the {len(EVENT_TYPES)} behaviours {EVENT_TYPES}")
        if config.event_types > 1:
            self.event_type_embeddings = _embedding(config.event_types, d, initialize)
        self.positions = _embedding(config.max_length, d, initialize)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(d)
        self.register_buffer("negative_log_q", torch.zeros(0), persistent=False)
        if initialize:
            self._init_weights()

    def _init_weights(self) -> None:
        # Small initial embeddings (as in BERT) keep the first logits near zero, so early training is stable.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        if hasattr(self, "item_ids"):
            with torch.no_grad():
                self.item_ids.weight[0].zero_()
        if hasattr(self, "item_to_item"):
            # Starts as "no opinion": the Transformer's scores alone, until training finds pair evidence.
            nn.init.zeros_(self.item_to_item.weight)

    def _seen_bias(self) -> torch.Tensor:
        """(N+1,) logit offset of an item that is in the history; PAD's is 0."""
        bias = self.history_bias_shared + self.history_bias
        return torch.cat([bias.new_zeros(1), bias[1:]])

    def _add_history_bias(
        self, logits: torch.Tensor, input_ids: torch.Tensor, scored: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``logits`` ``(B, L, N+1)`` (or ``(P, N+1)``, the ``scored`` positions) plus the history offset of every
        item among ``input_ids[:, :t+1]`` at position ``t``, once per item however often it occurs."""
        length = input_ids.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()  # s <= t
        # A later copy of an item becomes PAD, so no item is indexed twice (its offset would get double gradient).
        earlier_copy = ((input_ids.unsqueeze(2) == input_ids.unsqueeze(1)) & causal.tril(-1)).any(-1)  # (B, L)
        first = torch.where(earlier_copy, 0, input_ids)  # (B, L)
        seen = torch.where(causal, first.unsqueeze(1), 0)  # (B, L, L): [b, t, s] = first[b, s] for s <= t
        if scored is not None:
            seen = seen[scored]  # (P, L)
        # Scattering sparse indices instead of a dense (B, L, N+1) mask: at most L items per position are seen.
        # PAD entries add PAD's offset, 0, to the PAD column, which the loss masks anyway.
        # float32: under CUDA's bf16 autocast the logits are bf16, the offsets float32, and the cross-entropy
        # upcasts to float32 anyway, so the sum costs no extra memory and keeps the offset's precision.
        logits, dim = logits.float(), logits.dim() - 1
        return logits.scatter(dim, seen, logits.gather(dim, seen) + self._seen_bias()[seen])

    def _decode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(items, behaviour codes) of input tokens; a code the model was not built for is an error, not a guess."""
        items, codes = tokens % (self.n_items + 1), tokens // (self.n_items + 1)
        # Checked when scoring a caller's histories; training batches come from the split, and the check would
        # cost a device sync per step on a GPU.
        if not self.training and codes.numel() and int(codes.max()) >= self.config.event_types:
            raise ValueError(f"input holds behaviour code {int(codes.max())}; this model reads {self.config.event_types} "
                             f"behaviour(s) ({', '.join(EVENT_TYPES[:self.config.event_types])}) of {self.n_items} items")
        return items, codes

    def _purchases(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens with every non-purchase replaced by PAD: what the item-to-item matrix and history offset read."""
        return torch.where(tokens <= self.n_items, tokens, 0)

    @property
    def device(self) -> torch.device:
        return self.positions.weight.device

    def item_representations(self) -> torch.Tensor:
        """One vector per item id, PAD row included, ``(n_items + 1, D)``: embeds inputs, scores outputs."""
        parts = []
        if hasattr(self, "item_ids"):
            parts.append(self.item_ids.weight)
        if hasattr(self, "text_projection"):
            parts.append(self.text_projection(self.item_text))
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def forward(self, input_ids: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(B, L, D)`` for left-padded ``input_ids`` ``(B, L)``, ``L <= max_length``.

        Position ``t`` sees only positions ``<= t`` holding real items, so its output predicts the item after
        ``t`` and does not depend on later items or on how much padding precedes the history.
        """
        batch, length = input_ids.shape
        if length > self.config.max_length:
            raise ValueError(f"input length {length} exceeds max_length {self.config.max_length}")
        items = self.item_representations() if items is None else items
        is_item = input_ids != 0  # (B, L)
        item_ids, codes = self._decode(input_ids)  # (B, L) each
        # Positions count back from the most recent item, so extra left padding never shifts them.
        recency = torch.arange(length - 1, -1, -1, device=input_ids.device)  # (L,)
        x = F.embedding(item_ids, items) * math.sqrt(self.config.hidden_size)  # (B, L, D)
        if hasattr(self, "event_type_embeddings"):
            x = x + F.embedding(codes, self.event_type_embeddings.weight)
        x = x + F.embedding(recency, self.positions.weight)
        x = F.dropout(x, self.embedding_dropout.p, self.training) * is_item.unsqueeze(-1)
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()  # (L, L)
        # Every query also sees itself, so a padding row never has all keys masked (which would give NaN).
        diagonal = torch.eye(length, dtype=torch.bool, device=input_ids.device)
        attend = (causal & (is_item.unsqueeze(1) | diagonal)).unsqueeze(1)  # (B, 1, L, L)
        for block in self.blocks:
            x = block.forward(x, attend)
        return normed(self.final_norm, x)  # (B, L, D)

    def set_item_counts(self, counts: np.ndarray | torch.Tensor) -> None:
        """Training interactions per item id (length ``n_items + 1``), for popularity-sampled negatives."""
        counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
        if counts.shape != (self.n_items + 1,):
            raise ValueError(f"counts must have length {self.n_items + 1}, got {tuple(counts.shape)}")
        # +1 smoothing: every real item can be drawn, so none is only ever a positive.
        q = counts + 1.0
        q[0] = 0.0
        self.negative_log_q = (q / q.sum()).log().float().to(self.device)

    def training_loss(
        self, input_ids: torch.Tensor, target_ids: torch.Tensor, target_groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean next-item cross-entropy over the positions whose target is a real item.

        ``input_ids`` and ``target_ids`` are ``(B, L)``; ``target_ids[b, t]`` is the item after
        ``input_ids[b, t]`` (PAD where there is none). With ``target_groups`` ``(B, L)`` (ids of the timestamp
        each target shares with others, e.g. its invoice), position ``t`` is scored against every item from
        ``t`` to the end of its group, with equal weight: events that share a timestamp have no true order, so
        any of the group's unseen items is a correct "next item" (a set-aware target).
        """
        # Left padding shared by the whole batch holds no information (positions count back from the end), so
        # cutting it changes no output and saves most of the work when histories are shorter than max_length.
        occupied = ((input_ids != 0) | (target_ids != 0)).any(dim=0)  # (L,)
        start = int(occupied.int().argmax())
        input_ids, target_ids = input_ids[:, start:], target_ids[:, start:]  # (B, L')
        items = self.item_representations()  # (N+1, D)
        hidden = self(input_ids, items)  # (B, L', D)
        # Only purchases are targets: a position followed by a view teaches nothing, but its view still informs
        # the positions after it.
        target_ids = self._purchases(target_ids)
        bought = self._purchases(input_ids)  # (B, L')
        # (B, L', N+1): position t scores item j with sum over purchases up to t of W[purchase, j].
        pair_logits = self.item_to_item(bought).cumsum(dim=1) if hasattr(self, "item_to_item") else None
        with_bias = hasattr(self, "history_bias")
        if target_groups is not None:
            if self.config.loss != "full_ce":
                raise ValueError("set-aware targets (target_groups) need loss='full_ce'")
            logits = hidden @ items.T  # (B, L', N+1)
            if pair_logits is not None:
                logits = logits + pair_logits
            if with_bias:
                logits = self._add_history_bias(logits, bought)
            return self._set_cross_entropy(logits, target_ids, target_groups[:, start:])
        scored = target_ids != 0  # (B, L')
        if not scored.any():  # every target a view: nothing to learn from this batch, and no NaN from an empty mean
            return hidden.sum() * 0.0
        hidden, targets = hidden[scored], target_ids[scored]  # (P, D), (P,)
        pair_logits = None if pair_logits is None else pair_logits[scored]  # (P, N+1)
        if self.config.loss == "full_ce":
            logits = hidden @ items.T  # (P, N+1)
            if pair_logits is not None:
                logits = logits + pair_logits
            if with_bias:
                logits = self._add_history_bias(logits, bought, scored)
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits.float(), targets)
        history = (bought, target_ids, scored) if with_bias else None
        return self._sampled_softmax(hidden, targets, items, pair_logits, history)

    @staticmethod
    def _set_cross_entropy(logits: torch.Tensor, target_ids: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # (B, L, N+1)
        logits[..., 0] = float("-inf")
        log_p = F.log_softmax(logits, dim=-1)  # (B, L, N+1)
        length = target_ids.shape[1]
        # log_p_targets[b, t, s]: log-probability that position t gives to the target of position s.
        log_p_targets = log_p.gather(2, target_ids.unsqueeze(1).expand(-1, length, -1))  # (B, L, L)
        later = torch.ones(length, length, dtype=torch.bool, device=logits.device).triu()  # s >= t
        real = target_ids != 0  # (B, L)
        # Groups are contiguous in a chronological sequence, so "s >= t in t's group" is the rest of the group.
        same_group = groups.unsqueeze(2) == groups.unsqueeze(1)  # (B, L, L)
        counted = later & same_group & real.unsqueeze(1) & real.unsqueeze(2)  # (B, L, L)
        summed = torch.where(counted, log_p_targets, 0.0).sum(-1)  # (B, L)
        per_position = summed[real] / counted.sum(-1)[real]  # (P,)
        return -per_position.mean()

    def _sampled_softmax(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        items: torch.Tensor,
        pair_logits: torch.Tensor | None = None,
        history: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        # Shared negatives: one (P, K) product instead of P separate gathers. logQ correction (Yi et al. 2019)
        # subtracts log q(item) from every logit, so items drawn often are not over-penalised.
        k = self.config.n_negatives
        if self.config.negative_sampler == "popularity":
            if self.negative_log_q.numel() == 0:
                raise RuntimeError("negative_sampler='popularity' needs set_item_counts() before training")
            log_q = self.negative_log_q
            negatives = torch.multinomial(log_q.exp(), k, replacement=True)  # (K,)
        else:
            log_q = torch.full((self.n_items + 1,), -math.log(self.n_items), device=hidden.device)
            negatives = torch.randint(1, self.n_items + 1, (k,), device=hidden.device)  # (K,)
        positive = (hidden * items[targets]).sum(-1, keepdim=True) - log_q[targets].unsqueeze(1)  # (P, 1)
        negative = hidden @ items[negatives].T - log_q[negatives]  # (P, K)
        if pair_logits is not None:
            positive = positive + pair_logits.gather(1, targets.unsqueeze(1))
            negative = negative + pair_logits[:, negatives]
        if history is not None:
            # The history offset, for the targets and the K negatives only: sampling serves catalogues too large
            # for a dense (P, N+1) "seen" mask.
            input_ids, target_ids, scored = history  # (B, L') each
            length = input_ids.shape[1]
            causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()  # s <= t
            target_seen = ((target_ids.unsqueeze(2) == input_ids.unsqueeze(1)) & causal).any(-1)[scored]  # (P,)
            negative_seen = (input_ids.unsqueeze(-1) == negatives).cummax(dim=1).values[scored]  # (P, K)
            bias = self._seen_bias()
            positive = positive + (target_seen * bias[targets]).unsqueeze(1)
            negative = negative + negative_seen * bias[negatives]
        # A negative that happens to be the target is not a negative.
        negative = negative.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
        logits = torch.cat([positive, negative], dim=1).float()  # (P, 1+K)
        return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))

    def _batch(self, histories: list[np.ndarray]) -> torch.Tensor:
        # Padded to the longest history in the batch, not max_length: extra left padding changes nothing.
        length = max(1, min(self.config.max_length, max((len(h) for h in histories), default=1)))
        batch = np.zeros((len(histories), length), dtype=np.int64)
        for row, history in enumerate(histories):
            tail = np.asarray(history, dtype=np.int64)[-length:]
            if len(tail):
                batch[row, length - len(tail) :] = tail
        return torch.from_numpy(batch).to(self.device)

    def _every_module(self) -> tuple[nn.Module, ...]:
        """``modules()``, listed once: walking the tree costs more than the check that reads it."""
        listed = self.__dict__.get("_every_module_cache")  # a plain attribute: nn.Module would register a tuple
        if listed is None:
            listed = self.__dict__["_every_module_cache"] = tuple(self.modules())
        return listed

    def _inference_items(self) -> torch.Tensor:
        """``item_representations()`` for scoring, computed again only when a weight or buffer behind it has changed
        (an optimiser step or a load bumps a tensor's version): the text projection of the whole catalogue costs
        more than the forward pass of a short history."""
        tensors = [t for module in (getattr(self, "item_ids", None), getattr(self, "text_projection", None))
                   if module is not None for t in module.parameters()]
        if hasattr(self, "item_text"):
            tensors.append(self.item_text)
        key = tuple((id(t), t._version, t.device) for t in tensors)
        cached = getattr(self, "_items_cache", None)
        if cached is None or cached[0] != key:
            with torch.inference_mode():
                cached = (key, self.item_representations())
            self._items_cache = cached
        return cached[1]

    def score(self, histories: list[np.ndarray]) -> np.ndarray:
        """Scores ``(B, n_items + 1)`` float32 for the item after each history; column 0 (PAD) is ``-inf``.

        Uses the ``max_length`` most recent items of each history; an empty history gets the model's prior.
        """
        was_training = self.training
        # Switching modes walks every submodule through torch's slow __setattr__: a third of a short history's
        # scoring, so only when some module is in training mode.
        switch = any(module.training for module in self._every_module())
        if switch:
            self.eval()
        try:
            with torch.inference_mode():
                items = self._inference_items()  # (N+1, D)
                batch = self._batch(histories)  # (B, L)
                last = self(batch, items)[:, -1]  # (B, D)
                bought = self._purchases(batch)
                # The history's purchases as (row, item) pairs: the item-to-item term sums their rows of the
                # matrix, far cheaper than a dense (B, N+1) x (N+1, N+1) product for histories of a few items.
                rows, positions = torch.nonzero(bought, as_tuple=True)
                bought_items = bought[rows, positions]
                if hasattr(self, "history_bias"):
                    bag = torch.zeros(len(histories), self.n_items + 1, device=batch.device)
                    bag[rows, bought_items] = 1.0
                    seen_bias = self._seen_bias()  # (N+1,)
                scores = np.empty((len(histories), self.n_items + 1), dtype=np.float32)
                chunk = self.config.score_chunk_items
                for start in range(0, self.n_items + 1, chunk):
                    block = last @ items[start : start + chunk].T  # (B, chunk)
                    if hasattr(self, "item_to_item"):
                        block = block.index_add(0, rows, self.item_to_item.weight[bought_items, start : start + chunk])
                    if hasattr(self, "history_bias"):
                        block = block + bag[:, start : start + chunk] * seen_bias[start : start + chunk]
                    scores[:, start : start + chunk] = block.float().cpu().numpy()
        finally:
            if switch:
                self.train(was_training)
        scores[:, 0] = -np.inf
        return scores

    def score_each(self, histories: list[np.ndarray]) -> np.ndarray:
        """``score``, each history run alone (a batch of one): a row's scores are then the same to the bit whichever
        histories share the call, which a batched forward pass does not promise (its matrix products sum in
        shape-dependent orders). What serving needs to rank a customer alike alone, in a micro-batch or in the batch
        table; slower than ``score`` on a GPU."""
        if not histories:
            return np.empty((0, self.n_items + 1), dtype=np.float32)
        return np.concatenate([self.score([history]) for history in histories])

    def recommend(self, histories: list[np.ndarray], k: int, exclude_history: bool = False) -> np.ndarray:
        """Top-``k`` item ids ``(B, k)``, best first, ties to the lower id; PAD is never returned."""
        scores = self.score(histories)[:, 1:]  # (B, N): column j is item j + 1
        if exclude_history:
            for row, history in enumerate(histories):
                seen = np.asarray(history, dtype=np.int64)
                seen = seen[(seen > 0) & (seen <= self.n_items)]  # purchases: a viewed item is still a candidate
                scores[row, seen - 1] = -np.inf
        k = min(k, self.n_items)
        if k < self.n_items:
            candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (B, k), unordered
        else:
            candidates = np.tile(np.arange(self.n_items), (len(scores), 1))  # (B, N)
        order = np.lexsort((candidates, -np.take_along_axis(scores, candidates, axis=1)), axis=1)
        return np.take_along_axis(candidates, order, axis=1) + 1


def save(model: SASRec, folder: str | Path, item_ids: Sequence[object] | np.ndarray | None = None) -> Path:
    """Write ``model.pt`` (state dict: tensors only), ``config.json``, the frozen text matrix of a text variant
    (``item_text.npy``) and, when given, ``item_ids.json`` (internal id i + 1 <-> entry i), so the folder scores
    on its own, without the catalogue or the embeddings it was trained with."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    torch.save(state, folder / "model.pt")
    meta = {
        "format_version": _FORMAT_VERSION,
        "config": asdict(model.config),
        "n_items": model.n_items,
        "has_item_text": model.config.uses_text,
    }
    (folder / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if item_ids is not None:
        (folder / ITEM_IDS_FILE).write_text(json.dumps([str(item) for item in item_ids]) + "\n")
    if model.config.uses_text:
        np.save(folder / ITEM_TEXT_FILE, model.item_text.detach().cpu().numpy().astype(np.float32, copy=False))
    return folder


def load(
    folder: str | Path,
    item_text_embeddings: torch.Tensor | np.ndarray | None = None,
    device: str | torch.device | None = None,
) -> SASRec:
    """Rebuild a model written by ``save``, in eval mode, with the text matrix saved beside it unless one is given."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} holds no SASRec model (no config.json).")
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"unsupported SASRec format_version {meta.get('format_version')!r}")
    config = SASRecConfig(**meta["config"])
    text_file = folder / ITEM_TEXT_FILE
    if meta["has_item_text"] and item_text_embeddings is None and text_file.exists():
        item_text_embeddings = np.load(text_file, allow_pickle=False)
    if meta["has_item_text"] and item_text_embeddings is None:
        raise ValueError(f"{folder} holds a {config.item_text!r} model: pass item_text_embeddings")
    model = SASRec(config, meta["n_items"], item_text_embeddings if meta["has_item_text"] else None, initialize=False)
    # weights_only: the file is tensors in a dict, and nothing else is allowed to unpickle.
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device or "cpu").eval()


def load_item_ids(folder: str | Path) -> np.ndarray:
    """The external item ids ``save`` wrote, in internal-id order (entry i is internal id i + 1)."""
    return np.asarray(json.loads((Path(folder) / ITEM_IDS_FILE).read_text()), dtype=str)
