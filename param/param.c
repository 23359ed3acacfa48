#include "param/param.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void param_list_init(param_list *l) {
    memset(l, 0, sizeof *l);
    l->device = TENSOR_CPU;
}

void param_list_free(param_list *l) {
    for (int i = 0; i < l->n; i++) {
        tensor_free(l->items[i].value);
        free(l->items[i].name);
    }
    tensor_free(l->data);
    tensor_free(l->grad);
    free(l->items);
    param_list_init(l);
}

param *param_list_add(param_list *l, const char *name, tensor *value) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = xrealloc(l->items, (size_t)l->cap * sizeof(param));
    }
    param *p = &l->items[l->n++];
    memset(p, 0, sizeof *p);
    p->name = xstrdup(name);
    p->value = value;
    if (value) tensor_set_requires_grad(value, true);
    return p;
}

param *param_list_find(param_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->items[i].name, name)) return &l->items[i];
    return NULL;
}

int param_set_frozen(param *p, bool frozen) {
    if (!p->value) return err_set("parameter %s: no tensor", p->name);
    if (tensor_set_requires_grad(p->value, !frozen) != 0) return err_prefix("parameter %s", p->name);
    p->frozen = frozen;
    return 0;
}

// Offsets: the trainable entries first, then the frozen ones, each part in list order.
static int assign_offsets(param_list *l) {
    l->numel = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < l->n; i++) {
            param *p = &l->items[i];
            if (!p->value) return err_set("parameter %s: no tensor", p->name);
            if (p->frozen != (pass == 1)) continue;
            if (tensor_get_dtype(p->value) != tensor_get_dtype(l->items[0].value))
                return err_set("parameter %s: dtype %s differs from the list's %s", p->name,
                               tensor_dtype_name(tensor_get_dtype(p->value)),
                               tensor_dtype_name(tensor_get_dtype(l->items[0].value)));
            p->offset = l->numel;
            l->numel += tensor_numel(p->value);
        }
        if (pass == 0) l->n_trainable = l->numel;
    }
    return 0;
}

// A view of buf[offset, offset + numel(like)) shaped like `like`.
static tensor *flat_view(const tensor *buf, int64_t offset, const tensor *like) {
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(like, shape);
    return tensor_reshape(tensor_slice(buf, 0, offset, offset + tensor_numel(like)), shape, ndim);
}

// Copies p's value into data and swaps the handle's tensor for a leaf view of data.
static int rebind_value(param *p, const tensor *data) {
    tensor *view = flat_view(data, p->offset, p->value);
    if (tensor_copy_(view, p->value) != 0) return -1;
    tensor *leaf = tensor_detach(view);
    if (!leaf || tensor_set_requires_grad(leaf, !p->frozen) != 0) return -1;
    return tensor_swap_(p->value, leaf);  // leaf now holds the old tensor: the scope frees it
}

int param_list_pack(param_list *l, tensor_device dev) {
    bool known = l->n > 0 && l->items[0].value;  // else param_list_pack_as names the missing entry
    return param_list_pack_as(l, dev, known ? tensor_get_dtype(l->items[0].value) : TENSOR_F32);
}

int param_list_pack_as(param_list *l, tensor_device dev, tensor_dtype dtype) {
    if (assign_offsets(l) != 0) return -1;
    if (l->n == 0) return 0;
    int64_t n = l->numel, nt = l->n_trainable;
    tensor_scope_begin();
    tensor *data = tensor_keep(tensor_empty(&n, 1, dtype, dev));
    tensor *grad = nt > 0 ? tensor_keep(tensor_zeros(&nt, 1, dtype, dev)) : NULL;
    int rc = data && (grad || nt == 0) ? 0 : -1;
    for (int i = 0; i < l->n && rc == 0; i++) {
        param *p = &l->items[i];
        rc = rebind_value(p, data);
        if (rc == 0 && !p->frozen) rc = tensor_set_grad(p->value, flat_view(grad, p->offset, p->value));
        if (rc != 0) err_prefix("packing parameter %s", p->name);
    }
    tensor_scope_end();
    if (rc != 0) {
        tensor_free(data);
        tensor_free(grad);
        return -1;
    }
    tensor_free(l->data);
    tensor_free(l->grad);
    l->data = data, l->grad = grad, l->device = dev;
    return 0;
}

tensor *param_list_trainable(const param_list *l) {
    if (!l->data || l->n_trainable == 0) return NULL;
    return tensor_slice(l->data, 0, 0, l->n_trainable);
}

int param_list_zero_grad(param_list *l) { return l->grad ? tensor_fill_(l->grad, 0) : 0; }
